"""bushu.predict's input expansion and its resumable result files (no model needed)."""

from __future__ import annotations

import json

import pytest

from bushu.errors import UserInputError
from bushu.predict.inputs import collect
from bushu.predict.output import Journal, read_rows

ROWS = [
    {"input": "a.jpg", "label": "cat", "score": 0.5, "top_k": [{"index": 1, "label": "cat", "score": 0.5}]},
    {"input": "b.jpg", "error": "cannot decode b.jpg"},
    {"input": "c.jpg", "label": "dog", "score": 0.25, "top_k": [{"index": 2, "label": "dog", "score": 0.25}]},
]


def test_torn_tail_is_cut_and_error_rows_are_retried(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + '{"input": "d.jpg", "lab')
    j = Journal(out)
    assert j.open() == {"a.jpg", "c.jpg"}  # b failed: retried; d was torn: predicted again
    j.write([{"input": "b.jpg", "label": "eel", "score": 1.0}, {"input": "d.jpg", "label": "ant", "score": 1.0}])
    j.close()
    assert sorted(r["input"] for r in read_rows(out)) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_round_trip_and_extend(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"r{suffix}"
    j = Journal(out)
    assert j.open() == set()
    j.write(ROWS)
    j.close()
    assert read_rows(out) == ROWS and not j.path.exists()
    again = Journal(out)  # a finished file, extended by a rerun: its rows come back as the journal
    assert again.open() == {"a.jpg", "c.jpg"}
    again.write([{"input": "b.jpg", "label": "eel", "score": 1.0}])
    again.close()
    assert {r["input"]: r.get("label") for r in read_rows(out)} == {"a.jpg": "cat", "c.jpg": "dog", "b.jpg": "eel"}


def test_unknown_output_suffix_and_foreign_file(tmp_path):
    with pytest.raises(UserInputError, match="cannot tell the output format"):
        Journal(tmp_path / "r.xlsx")
    (tmp_path / "x.jsonl").write_text('{"not": "ours"}\n')
    with pytest.raises(UserInputError, match="has no 'input'"):
        Journal(tmp_path / "x.jsonl").open()


def test_inputs_lists_tables_and_globs(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a.jpg", "b.png", ".hidden.jpg"):
        (tmp_path / "img" / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("img/a.jpg\n# a comment\n\nimg/b.png\n")
    (tmp_path / "t.csv").write_text("file,other\nimg/a.jpg,1\n")
    items = collect(
        [str(tmp_path / "img"), f"@{tmp_path / 'list.txt'}", str(tmp_path / "t.csv"), str(tmp_path / "img" / "*.png")],
        "image",
    )
    assert [it.key for it in items] == [str(tmp_path / "img" / "a.jpg"), str(tmp_path / "img" / "b.png")]  # once
    (tmp_path / "texts.jsonl").write_text('{"text": "hello"}\n{"text": ""}\n')
    texts = collect([str(tmp_path / "texts.jsonl")], "text")
    assert [(it.key, it.value, it.is_text) for it in texts] == [
        (f"{tmp_path / 'texts.jsonl'}:1", "hello", True),
        (f"{tmp_path / 'texts.jsonl'}:2", "", True),
    ]
    (tmp_path / "u.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserInputError, match="no path or text column"):
        collect([str(tmp_path / "u.csv")], "image")
    with pytest.raises(UserInputError, match="matches no input"):
        collect([str(tmp_path / "*.nothing")], "image")


def test_local_plan_two_streams_only_for_backends_that_take_concurrent_calls():
    from bushu.predict.runner import local_plan
    from bushu.runtime.backends.null import NullBackend
    from bushu.runtime.backends.onnxruntime import OnnxRuntimeBackend

    assert OnnxRuntimeBackend.concurrent_infer and not NullBackend.concurrent_infer
    assert local_plan(OnnxRuntimeBackend, None, cores=2) == (2, 1)  # two 1-thread streams fill 2 cores
    assert local_plan(OnnxRuntimeBackend, None, cores=16) == (2, 15)  # 2 callers + 14 pool workers
    assert local_plan(OnnxRuntimeBackend, 4, cores=16) == (2, 4)  # --threads is kept
    assert local_plan(OnnxRuntimeBackend, None, cores=1) == (1, None)
    assert local_plan(NullBackend, None, cores=16) == (1, None)
