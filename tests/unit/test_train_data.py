"""`bushu train` input handling: the data check, the split, the budget parser, and every bad input
the issue lists answered by one clear error line (no model is loaded in these tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bushu.cli import main
from bushu.errors import UserInputError
from bushu.train import parse_budget
from bushu.train.data import load_dataset, split_stratified


def _img(path: Path, value: int, size=(20, 16), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    arr = rng.integers(0, 255, (size[1], size[0], 4 if mode == "RGBA" else 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGBA" if mode == "RGBA" else "RGB")
    img.convert(mode).save(path)


def _run_error(args: list[str], capsys) -> str:
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ")
    return err


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(6):
        _img(root / "cat" / f"{i}.png", i)
    for i in range(6):
        _img(root / "dog" / f"{i}.jpg", 100 + i, mode="L" if i % 2 else "RGB")
    _img(root / "dog" / "alpha.png", 300, mode="RGBA")
    _img(root / "bird" / "0.webp", 400)  # one example only -> a warning, and one for val... see below
    _img(root / "bird" / "1.bmp", 401)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "cat" / "notes.md").write_text("ignored")
    (root / "dog" / "copy.png").write_bytes((root / "cat" / "0.png").read_bytes())  # duplicate across classes
    return root


def test_data_check_lists_counts_corrupt_duplicates_and_warnings(images: Path) -> None:
    ds = load_dataset(images, seed=0)
    c = ds.check
    assert ds.kind == "image" and ds.classes == ["bird", "cat", "dog"]
    assert c.counts == {"bird": 2, "cat": 6, "dog": 7}  # broken.jpg skipped, copy.png dropped
    assert [Path(s["path"]).name for s in c.skipped] == ["broken.jpg"]
    assert len(c.duplicates) == 1 and c.duplicates[0]["classes"] == ["cat", "dog"]
    assert c.ignored == 1
    assert any("few examples: bird (2)" in w for w in c.warnings)
    assert any("different classes" in w for w in c.warnings)
    assert c.imbalance == 3.5
    # stratified: every class in both splits, nothing lost or repeated; a test part (0.2 by default) from the
    # classes large enough to spare one (bird has 2: one for training, one for validation)
    assert {it.label for it in ds.train} == {0, 1, 2} == {it.label for it in ds.val}
    assert ds.test_split == "stratified" and sorted(it.label for it in ds.test) == [1, 2]
    assert any("no test example for bird" in w for w in c.warnings)
    assert sorted(it.source for it in ds.train + ds.val + ds.test) == sorted(
        str(p)
        for p in images.rglob("*")
        if p.suffix in (".png", ".jpg", ".webp", ".bmp") and p.name not in ("broken.jpg", "copy.png")
    )


def test_split_is_stratified_and_reproducible() -> None:
    from bushu.train.data import Item

    items = [Item(f"{c}{i}", c) for c in range(3) for i in range(10 * (c + 1))]
    tr, va = split_stratified(items, 0.2, seed=1)
    assert [sum(1 for it in va if it.label == c) for c in range(3)] == [2, 4, 6]
    assert split_stratified(items, 0.2, seed=1) == (tr, va)
    assert not set(tr) & set(va)


def test_test_size_is_stratified_seeded_and_disjoint(tmp_path: Path) -> None:
    for c, n in (("a", 20), ("b", 10)):
        for i in range(n):
            _img(tmp_path / c / f"{i}.png", 1000 * len(c) + 10 * n + i)
    ds = load_dataset(tmp_path, test_fraction=0.3, seed=4)
    assert sorted(it.label for it in ds.test) == [0] * 6 + [1] * 3
    parts = [{it.source for it in p} for p in (ds.train, ds.val, ds.test)]
    assert sum(map(len, parts)) == 30 and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert [it.source for it in load_dataset(tmp_path, test_fraction=0.3, seed=4).test] == [it.source for it in ds.test]
    assert [it.source for it in load_dataset(tmp_path, test_fraction=0.3, seed=5).test] != [it.source for it in ds.test]
    none = load_dataset(tmp_path, test_fraction=0)
    assert none.test == [] and none.test_split == "none" and len(none.train) + len(none.val) == 30
    # the search's caches and study are keyed by the fingerprint, which only train/val make
    assert load_dataset(tmp_path, test_fraction=0.3, seed=4).fingerprint() == ds.fingerprint()


def test_given_test_folder_and_test_size_from_a_given_val(tmp_path: Path) -> None:
    for s, (split, n) in enumerate((("train", 4), ("val", 5), ("test", 3))):
        for j, c in enumerate(("a", "b")):
            for i in range(n):
                _img(tmp_path / split / c / f"{i}.png", 100 * s + 10 * j + i)
    (tmp_path / "test" / "a" / "copy.png").write_bytes((tmp_path / "train" / "a" / "0.png").read_bytes())
    ds = load_dataset(tmp_path)
    assert ds.test_split == "given" and len(ds.test) == 6 and len(ds.train) == 8 and len(ds.val) == 10
    assert any(d["dropped"].endswith("test/a/copy.png") for d in ds.check.duplicates)  # leaked copy dropped
    shutil.rmtree(tmp_path / "test")
    assert load_dataset(tmp_path).test == []  # a given val and no test folder: no test part unless asked
    ds = load_dataset(tmp_path, test_fraction=0.2)  # taken out of the val folder; train stays whole
    assert ds.test_split == "stratified" and len(ds.train) == 8 and len(ds.val) + len(ds.test) == 10
    assert {it.source for it in ds.test} <= {str(p) for p in (tmp_path / "val").rglob("*.png")}


def test_wilson_interval() -> None:
    from bushu.eval_ import wilson_interval

    lo, hi = wilson_interval(8, 10)
    assert round(lo, 3) == 0.490 and round(hi, 3) == 0.943  # the textbook value for 8/10
    assert wilson_interval(0, 5)[0] == 0.0 and 0.4 < wilson_interval(0, 5)[1] < 0.5
    assert wilson_interval(50, 50)[1] == pytest.approx(1.0) and wilson_interval(50, 50)[0] > 0.92


def test_bad_test_size_is_a_clear_error(images: Path, capsys) -> None:
    err = _run_error([str(images), "-o", str(images.parent / "o"), "--test-size", "1.5"], capsys)
    assert "--test-size (test_fraction) must be between 0 and 1" in err


def test_given_train_val_folders_are_kept(tmp_path: Path) -> None:
    for s, (split, n) in enumerate((("train", 3), ("val", 2))):
        for j, c in enumerate(("a", "b")):
            for i in range(n):  # distinct seeds: str hashes vary per process and could collide into a duplicate
                _img(tmp_path / split / c / f"{i}.png", 100 * s + 10 * j + i)
    ds = load_dataset(tmp_path)
    assert ds.split == "given" and len(ds.train) == 6 and len(ds.val) == 4


def test_text_folder_and_csv(tmp_path: Path) -> None:
    for c in ("sport", "tech"):
        for i in range(3):
            (tmp_path / "t" / c).mkdir(parents=True, exist_ok=True)
            (tmp_path / "t" / c / f"{i}.txt").write_text(f"{c} story number {i}", encoding="utf-8")
    (tmp_path / "t" / "tech" / "latin1.txt").write_bytes("caf\xe9 na\xefve".encode("latin-1"))
    ds = load_dataset(tmp_path / "t")
    assert ds.kind == "text" and ds.check.counts == {"sport": 3, "tech": 3}
    assert "not UTF-8" in ds.check.skipped[0]["reason"]
    csv = tmp_path / "d.csv"
    csv.write_text('text,label\nhello there,greet\n"bye, now",leave\nhi,greet\nso long,leave\n,greet\n')
    ds = load_dataset(csv)
    assert ds.classes == ["greet", "leave"] and ds.check.counts == {"greet": 2, "leave": 2}
    assert len(ds.check.skipped) == 1


@pytest.mark.parametrize(
    ("text", "seconds"), [("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("none", None), (45, 45)]
)
def test_parse_budget(text, seconds) -> None:
    assert parse_budget(text) == seconds


def test_parse_budget_rejects_nonsense() -> None:
    with pytest.raises(UserInputError, match="cannot read the budget"):
        parse_budget("five minutes")


def test_bad_inputs_give_one_clear_error(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "art")
    (tmp_path / "empty").mkdir()
    assert "is empty" in _run_error([str(tmp_path / "empty"), "-o", out], capsys)

    assert "not found" in _run_error([str(tmp_path / "nope"), "-o", out], capsys)

    for i in range(3):
        _img(tmp_path / "one" / "cat" / f"{i}.png", i)
    assert "at least 2 classes" in _run_error([str(tmp_path / "one"), "-o", out], capsys)

    for i in range(3):
        _img(tmp_path / "zero" / "cat" / f"{i}.png", i)
    (tmp_path / "zero" / "dog").mkdir(parents=True)
    (tmp_path / "zero" / "dog" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    err = _run_error([str(tmp_path / "zero"), "-o", out], capsys)
    assert "no usable images: 'dog' (1 unreadable)" in err

    _img(tmp_path / "single" / "cat" / "0.png", 1)
    _img(tmp_path / "single" / "cat" / "1.png", 2)
    _img(tmp_path / "single" / "dog" / "0.png", 3)
    err = _run_error([str(tmp_path / "single"), "-o", out], capsys)
    assert "dog have only one usable example" in err

    for c in ("a", "b"):
        (tmp_path / "txt" / c).mkdir(parents=True)
        (tmp_path / "txt" / c / "0.txt").write_bytes(b"\xff\xfe\x00bad")
    assert "no usable texts" in _run_error([str(tmp_path / "txt"), "-o", out], capsys)

    assert "cannot read the budget" in _run_error([str(tmp_path / "one"), "-o", out, "--budget", "soon"], capsys)
    assert "unknown head 'tree'" in _run_error([str(tmp_path / "one"), "-o", out, "--head", "tree"], capsys)
    assert not (tmp_path / "art").exists()


# -- audio ----------------------------------------------------------------------------------------------
def _wav(path: Path, freq: float, sr: int = 22050, seconds: float = 0.5, width: int = 2) -> np.ndarray:
    """A sine tone written with the stdlib (an encoder independent of the decoder under test)."""
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    scale = 2 ** (8 * width - 1) - 1
    ints = np.round(x * scale).astype("<i4")
    raw = (
        ints.astype("<i2").tobytes()
        if width == 2
        else b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(sr)
        w.writeframes(raw)
    return x


def test_audio_folder_lists_unsupported_and_corrupt_clips_and_reads_flac(tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    root = tmp_path / "clips"
    for i in range(3):
        _wav(root / "low" / f"{i}.wav", 300 + 10 * i)
        _wav(root / "high" / f"{i}.wav", 3000 + 10 * i, seconds=0.25 * (i + 1))
    t = np.arange(8000) / 16000
    sf.write(str(root / "high" / "extra.flac"), 0.3 * np.sin(2 * np.pi * 2500 * t), 16000)
    (root / "low" / "song.mp3").write_bytes(b"ID3\x03\x00" + bytes(100))
    (root / "low" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    (root / "low" / "notes.md").write_text("ignored")
    ds = load_dataset(root, val_fraction=0.34)
    assert ds.kind == "audio" and ds.classes == ["high", "low"]
    assert ds.check.counts == {"high": 4, "low": 3} and ds.check.ignored == 1
    reasons = {Path(s["path"]).name: s["reason"] for s in ds.check.skipped}
    assert set(reasons) == {"song.mp3", "broken.wav"}
    assert "unsupported audio format .mp3" in reasons["song.mp3"] and "convert it to .wav" in reasons["song.mp3"]
    assert "cannot decode" in reasons["broken.wav"]
    secs = {Path(it.source).name: it.seconds for it in ds.train + ds.val + ds.test if "high" in it.source}
    assert secs == {"0.wav": 0.25, "1.wav": 0.5, "2.wav": 0.75, "extra.flac": 0.5}


@pytest.mark.parametrize("width", [2, 3])
def test_wav_decoding_without_soundfile_matches_the_written_samples(tmp_path: Path, width: int, monkeypatch) -> None:
    import sys

    from bushu.model import audio

    x = _wav(tmp_path / "a.wav", 440, sr=8000, width=width)
    monkeypatch.setitem(sys.modules, "soundfile", None)  # the stdlib `wave` path
    y, sr = audio.load_audio(tmp_path / "a.wav")
    assert sr == 8000 and y.dtype == np.float32
    assert np.abs(y - x).max() < 2.0 / 2 ** (8 * width - 1)


def test_log_mel_puts_a_tone_in_the_right_band_after_resampling() -> None:
    from bushu.model.audio import DEFAULT_SPECTROGRAM, _hz_to_mel, _mel_to_hz, log_mel, mel_filterbank, resample

    sr = 22050
    t = np.arange(sr) / sr
    for freq in (500.0, 2000.0, 6000.0):
        x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        y = resample(x, sr, 16000)
        assert len(y) == 16000
        # the tone keeps its frequency and amplitude (FFT peak of the resampled signal)
        spec = np.abs(np.fft.rfft(y)) / len(y) * 2
        assert abs(np.argmax(spec) - freq) <= 1 and spec.max() == pytest.approx(0.5, abs=0.02)
        db = log_mel(x, sr, DEFAULT_SPECTROGRAM)
        assert db.shape == (64, 101) and db.max() == 0.0 and db.min() >= -80.0
        centres = _mel_to_hz(np.linspace(_hz_to_mel(20.0), _hz_to_mel(8000.0), 66))[1:-1]
        assert abs(centres[int(np.argmax(db.mean(axis=1)))] - freq) / freq < 0.1
    assert (log_mel(np.zeros(8000, np.float32), 16000, DEFAULT_SPECTROGRAM) == -80.0).all()  # silence is dark
    fb = mel_filterbank(16000, 400, 64, 20.0, 8000.0)
    assert fb.shape == (64, 201) and (fb >= 0).all() and (fb.sum(axis=1) > 0).all()  # no empty filter


def test_preprocess_params_round_trip_and_image_metadata_is_unchanged() -> None:
    from bushu.model.artifact import Preprocess

    img = Preprocess()
    assert "params" not in img.to_dict() and Preprocess.from_dict(img.to_dict()) == img
    text = Preprocess(
        kind="text", params={"tokenizer": "tokenizer.json", "max_length": 256, "files": ["tokenizer.json"]}
    )
    assert text.to_dict() == {"kind": "text", "params": text.params}  # no image fields for a text model
    back = Preprocess.from_dict(text.to_dict())
    assert back.kind == "text" and back.params == text.params and back.files == ["tokenizer.json"]
    audio = Preprocess(kind="audio", crop=96, resize=None, params={"sample_rate": 16000, "n_mels": 64})
    back = Preprocess.from_dict(audio.to_dict())
    assert back.crop == 96 and back.resize is None and back.params == audio.params and back.files == []
