"""`bushu train` on Chinese text (Debian fortunes-zh: Tang poems, Song poems, modern sayings), which has
no spaces between words: TF-IDF switches to character n-grams, the artifact takes raw Chinese strings,
and the report carries the Chinese class names. Accuracy is measured on the held-out test part."""

from __future__ import annotations

import json

import pytest

from bushu.cli import main
from bushu.errors import NotFoundError
from bushu.model.artifact import Artifact
from bushu.train.text import is_cjk


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    from bushu.testing.datasets import write_chinese_texts

    root = tmp_path_factory.mktemp("zh")
    try:
        data = write_chinese_texts(root / "data", per_class=60, seed=0)
    except NotFoundError as e:
        pytest.skip(f"{e.message} ({e.hint})")
    out = root / "art"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert (
            main(
                ["train", str(data), "-o", str(out), "--backbone", "tfidf", "--trials", "5", "--budget", "3m", "--json"]
            )
            == 0
        )
    return {"data": data, "out": out, "summary": json.loads(buf.getvalue())}


def test_cjk_detection() -> None:
    assert is_cjk(["床前明月光，疑是地上霜。"]) and is_cjk(["東京は日本の首都です"]) and is_cjk(["안녕하세요 세계"])
    assert not is_cjk(["The quick brown fox", "naïve café"]) and not is_cjk([""])


def test_chinese_text_trains_on_character_ngrams_well_above_chance(trained) -> None:
    s, out = trained["summary"], trained["out"]
    desc = json.loads((out / "text_features.json").read_text(encoding="utf-8"))
    assert desc["analyzer"] == "char" and desc["ngram_range"] == [1, 2]
    assert any(len(t) == 2 and all("\u4e00" <= c <= "\u9fff" for c in t) for t in desc["vocabulary"])
    assert s["classes"] == ["唐诗", "宋诗", "现代"]  # folder names, sorted by code point
    assert s["n_test"] == 36  # 0.2 of 60 per class, held out
    assert s["test_accuracy"] >= 0.6  # chance is 1/3; measured 0.89 with 90 a class (README)


def test_artifact_classifies_raw_chinese_strings_and_report_shows_the_names(trained) -> None:
    from bushu.train.text import TextClassifier

    out = trained["out"]
    assert Artifact.load(out).labels == trained["summary"]["classes"]
    clf = TextClassifier(out)
    poem = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"  # Wang Zhihuan, Tang; not in the training texts
    top = clf.predict([poem])[0][0][1]
    assert top in ("唐诗", "宋诗")  # a classical poem, not a modern saying
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in html and "唐诗" in html and "宋诗" in html
    from bushu.train.report import cjk_font

    if cjk_font() is None:
        assert "no CJK font is installed" in html
