"""`bushu quickstart`: the main job end to end on the bundled offline model and photos."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ._output import console, print_json, table

DEFAULT_MODEL = "efficientnet_lite0"


def sample_photos() -> dict[str, object]:
    """Real photos that ship inside scikit-image and scikit-learn (no download)."""
    from PIL import Image

    photos: dict[str, object] = {}
    try:
        from skimage import data as skdata

        for name in ("chelsea", "coffee", "rocket", "astronaut"):
            photos[name] = Image.fromarray(getattr(skdata, name)())
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_images

        imgs = load_sample_images()
        for fname, arr in zip(imgs.filenames, imgs.images):
            photos[Path(fname).stem] = Image.fromarray(arr)
    except ImportError:
        pass
    if not photos:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("the quickstart photos (scikit-image, scikit-learn)", "data")
    return photos


def classify(art, photos: dict[str, object], k: int = 3) -> list[dict]:
    from ..model.processing import preprocess_images, top_k
    from ..runtime import load_backend

    with load_backend(art.model_path, "onnxruntime") as be:
        x = preprocess_images(list(photos.values()), art.preprocess)
        logits = be.infer({be.inputs[0].name: x})[be.outputs[0].name]
    rows = []
    for name, preds in zip(photos, top_k(logits, art.labels, art.postprocess, k=k)):
        rows.append(
            {
                "photo": name,
                "top-1": f"{preds[0][1]} ({preds[0][2]:.2f})",
                "next": ", ".join(f"{lbl} ({s:.2f})" for _, lbl, s in preds[1:]),
            }
        )
    return rows


@click.command("quickstart")
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=Path("quickstart-out"),
    show_default=True,
    help="Where to write the artifact, model repository and report.",
)
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Zoo model to use (see `bushu import --list`).")
@click.option("--duration", default=2.0, show_default=True, help="Seconds of timed runs per benchmark row.")
@click.option("--no-serve", is_flag=True, help="Skip starting the server and querying it.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(out: Path, model: str, duration: float, no_serve: bool, as_json: bool) -> None:
    """Import a real pretrained model, classify real photos, benchmark every installed backend,
    write a Triton-layout model repository, serve it and query it once. Everything is offline."""
    from ..bench.bench import benchmark
    from ..envinfo import environment
    from ..import_.importer import import_model
    from ..runtime.registry import installed_backends
    from ..serve.repository import add_to_repository

    t0 = time.perf_counter()
    summary: dict = {}
    env = environment()
    console.print(
        f"[bold]bushu quickstart[/] on {env.get('cpu', {}).get('model', '?')}, "
        f"{env.get('cpu', {}).get('logical_cores', '?')} cores; backends: {', '.join(installed_backends())}"
    )

    console.rule(f"1. import {model}")
    art = import_model(model, out / model)
    parity = art.metrics.get("parity", {})
    summary["artifact"] = str(art.path)
    summary["parity"] = parity
    console.print(
        f"artifact: {art.path}  ({art.size_bytes / 1e6:.1f} MB); parity vs PyTorch: "
        + ", ".join(f"{o['name']} max abs {o['max_abs']:.2g}" for o in parity.get("outputs", []))
    )

    console.rule("2. classify real photos (onnxruntime)")
    photos = sample_photos()
    preds = classify(art, photos)
    table(preds)
    summary["predictions"] = preds

    console.rule("3. optimize: static int8, calibrated on the photos, checked against fp32")
    int8 = quantize_int8(art, out / f"{model}-int8", photos)
    summary["int8"] = int8["summary"]
    console.print(
        f"int8 artifact: {int8['art'].path} ({int8['summary']['size_mb']} MB, "
        f"{int8['summary']['size_ratio']}× the fp32 size); top-1 agreement with fp32 on the photos: "
        f"{int8['summary']['top1_agreement']}"
    )

    console.rule("4. benchmark every installed backend (fp32) and onnxruntime int8")
    rows = benchmark(art, backends=None, batch_sizes=(1, 8), duration_s=duration)
    rows += [
        {**r, "precision": "int8"}
        for r in benchmark(int8["art"], backends=["onnxruntime"], batch_sizes=(1, 8), duration_s=duration)
    ]
    table(
        [r for r in rows if r["status"] != "skipped"],
        ["backend", "batch", "precision", "p50_ms", "p99_ms", "throughput", "peak_rss_mb", "status"],
    )
    skipped = sorted({r["backend"] for r in rows if r["status"] == "skipped"})
    if skipped:  # edge runtimes read their own formats, not the artifact's ONNX
        console.print(
            f"not benchmarked: {', '.join(skipped)} (they run exported files: "
            f"bushu export {art.path} --format tflite,mnn,ncnn, then bushu bench the exported file)"
        )
    summary["bench"] = rows

    console.rule("5. write a Triton-layout model repository")
    repo = out / "models"
    entry = add_to_repository(repo, art, name=model)
    console.print(f"wrote {entry} (config.pbtxt with dynamic batching)")
    summary["repository"] = str(repo)

    if not no_serve:
        console.rule("6. serve it and query once")
        summary["served"] = serve_and_query(repo, model, sample_photos()["chelsea"])
        console.print(f"POST {summary['served']['url']} → {summary['served']['top1']}")

    summary["seconds"] = round(time.perf_counter() - t0, 1)
    if as_json:
        print_json(summary)
        return
    console.rule("next")
    console.print(
        f"  bushu info {art.path}\n"
        f"  bushu bench {art.path} --batch 1,8,32\n"
        f"  bushu serve {repo}      # then: curl -s -X POST --data-binary @cat.jpg "
        f"http://127.0.0.1:8000/v1/models/{model}:classify\n"
        f"done in {summary['seconds']} s"
    )


def quantize_int8(art, out: Path, photos: dict[str, object]) -> dict:
    """Static int8 calibrated on the quickstart photos; agreement with fp32 measured on the same photos."""
    from ..model.processing import preprocess_images
    from ..optimize import StaticInt8Config, quantize
    from ..validate import agreement, run_model

    x = preprocess_images(list(photos.values()), art.preprocess)
    feeds = {art.inputs[0].name: x}
    q = quantize(art, out, StaticInt8Config(calibration=feeds), measure=False)
    agree = agreement(run_model(art.model_path, feeds), run_model(q.model_path, feeds))
    top1 = next(iter(agree.values())).get("top1_agreement")
    return {
        "art": q,
        "summary": {
            "path": str(q.path),
            "size_mb": round(q.size_bytes / 1e6, 2),
            "size_ratio": round(q.size_bytes / art.size_bytes, 2),
            "top1_agreement": top1,
            "samples": len(x),
        },
    }


def serve_and_query(repo: Path, model: str, image) -> dict:
    """Start the real server on free loopback ports, send one image, return the answer."""
    import io
    import json
    import urllib.request

    from ..serve import start_server

    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    with start_server(repo, http_port=0, grpc_port=0, metrics_port=0) as srv:
        url = f"{srv.http_url}/v1/models/{model}:classify"
        req = urllib.request.Request(url, data=buf.getvalue(), headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
    top = answer["predictions"][0] if "predictions" in answer else answer
    return {"url": url, "top1": top, "answer": answer}
