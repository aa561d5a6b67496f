"""Heads and the Optuna search on small synthetic features (no backbone): the logistic-regression
head equals scikit-learn's, the SGD heads learn separable data, and the search state survives a
killed process (trials left RUNNING are failed and redone; finished ones are kept)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("optuna")

from bushu.train.heads import HeadConfig, fit_head  # noqa: E402
from bushu.train.search import SearchSpace, best_trial, leaderboard, open_study, run_search  # noqa: E402


def blobs(n_per_class: int, classes: int = 3, dim: int = 16, seed: int = 0, spread: float = 1.0, noise: int = 0):
    centres = np.random.default_rng(seed).normal(0, 3, (classes, dim))
    rng = np.random.default_rng(1000 + noise)
    x = np.concatenate([c + rng.normal(0, spread, (n_per_class, dim)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


def test_logreg_head_is_sklearns_logistic_regression() -> None:
    import torch
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(20, spread=3.0, seed=1)
    xv, yv = blobs(15, spread=3.0, seed=1, noise=1)
    for standardize in (False, True):
        res = fit_head(HeadConfig(kind="logreg", C=0.5, standardize=standardize), x, y, xv, yv, 3)
        z, zv = x, xv
        if standardize:
            m, s = x.mean(0), x.std(0)
            s = np.maximum(s, np.median(s))
            z, zv = (x - m) / s, (xv - m) / s
        ref = LogisticRegression(C=0.5, max_iter=2000, class_weight="balanced").fit(z, y)
        with torch.no_grad():
            logits = res.module(torch.from_numpy(xv)).numpy()
        np.testing.assert_allclose(
            logits - logits.mean(1, keepdims=True),
            ref.decision_function(zv) - ref.decision_function(zv).mean(1, keepdims=True),
            atol=1e-3,
        )
        assert res.val_accuracy == pytest.approx(ref.score(zv, yv))


def test_binary_logreg_head_gives_two_logits() -> None:
    import torch

    x, y = blobs(10, classes=2, seed=2)
    res = fit_head(HeadConfig(kind="logreg"), x, y, x, y, 2)
    with torch.no_grad():
        assert tuple(res.module(torch.from_numpy(x)).shape) == (20, 2)
    assert res.val_accuracy == 1.0


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_sgd_heads_learn_and_stop_early(kind) -> None:
    x, y = blobs(15, seed=3)
    xv, yv = blobs(10, seed=3, noise=1)
    res = fit_head(HeadConfig(kind=kind, epochs=60, lr=1e-2, batch_size=16), x, y, xv, yv, 3, patience=10)
    assert res.val_accuracy == 1.0
    best = max(res.history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
    assert res.best_epoch == best["epoch"]
    # labels unrelated to the validation labels: validation never improves for long, so training stops
    noise = np.random.default_rng(0).permutation(y)
    res = fit_head(HeadConfig(kind=kind, epochs=120, lr=1e-2, batch_size=16), x, noise, xv, yv, 3, patience=10)
    assert len(res.history) == res.best_epoch + 10 < 120


def test_search_resumes_after_a_killed_run(tmp_path, monkeypatch) -> None:
    import time

    from bushu.train import search

    x, y = blobs(8, seed=4, spread=4.0)
    xv, yv = blobs(8, seed=4, spread=4.0, noise=1)
    feats = {"a": {"train": x, "val": xv}, "b": {"train": x[:, :8], "val": xv[:, :8]}}
    space = SearchSpace(sources=("a", "b"), heads=("logreg", "linear"), augment=False)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setattr(search, "GRACE_S", 1)
    study = open_study(storage, "s", seed=0)
    assert run_search(study, space, feats, y, yv, 3, trials=3, deadline=None, seed=0) == 3
    with pytest.warns(UserWarning, match="Heartbeat of storage"):  # optuna: heartbeats expect Study.optimize
        killed = study.ask()  # a trial that a killed process left RUNNING: its heartbeat stops
    study._storage.record_heartbeat(killed._trial_id)
    alive = open_study(storage, "s", seed=0)  # another worker joining now must not fail it
    assert {t.number: t.state.name for t in alive.trials}[killed.number] == "RUNNING"
    time.sleep(2.5)  # the heartbeat goes stale (grace 1 s)
    study = open_study(storage, "s", seed=0)  # the next run
    states = {t.number: t.state.name for t in study.trials}
    assert states[killed.number] == "FAIL"
    assert sum(s == "COMPLETE" for s in states.values()) == 3
    assert run_search(study, space, feats, y, yv, 3, trials=5, deadline=None, seed=0) == 2
    rows = leaderboard(study)
    assert len([r for r in rows if r["state"] != "fail"]) == 5
    # the first two trials are the enqueued baselines: logistic regression on each source
    first = sorted(rows, key=lambda r: r["trial"])[:2]
    assert [(r["source"], r["head"]) for r in first] == [("a", "logreg"), ("b", "logreg")]
    best = best_trial(study)
    assert best.value == pytest.approx(max(r["val_accuracy"] for r in rows if r["state"] == "complete"), abs=1e-4)
    assert best.value > 0.5


WORKER = """
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, {tests!r})
from test_train_search import blobs
from bushu.train.search import SearchSpace, open_study, run_search
x, y = blobs(8, seed=4, spread=4.0)
xv, yv = blobs(8, seed=4, spread=4.0, noise=1)
feats = {{"a": {{"train": x, "val": xv}}}}
study = open_study(sys.argv[1], "shared", seed=int(sys.argv[2]))
Path(sys.argv[3]).write_text("ready")
while not Path(sys.argv[4]).exists():
    time.sleep(0.05)
print(run_search(study, SearchSpace(sources=("a",), heads=("logreg", "linear"), augment=False),
                 feats, y, yv, 3, trials=12, deadline=None, seed=int(sys.argv[2])))
"""


@pytest.mark.slow
def test_workers_share_one_study(tmp_path) -> None:
    """`bushu train --storage URL` on several machines: two workers fill one study at the same time, with no
    failed or dangling trials (a joining worker leaving live trials alone is checked in the test above)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    open_study(storage, "shared", seed=0)  # create the schema once, before the workers race for it
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), storage, str(i), str(tmp_path / f"ready{i}"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in (1, 2)) and time.time() < deadline:
        time.sleep(0.1)
    go.write_text("go")
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    ran = [int(o[0].strip().splitlines()[-1]) for o in outs]
    study = open_study(storage, "shared", seed=0)
    states = [t.state.name for t in study.trials]
    assert "FAIL" not in states and "RUNNING" not in states, states
    assert sum(s == "COMPLETE" or s == "PRUNED" for s in states) >= 12
    assert all(r >= 1 for r in ran), ran  # each call counts every trial added while it ran, its own and the other's
