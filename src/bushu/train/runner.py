"""Shared steps of every `bushu train` pipeline: budget bookkeeping, the search with a progress bar,
refitting the chosen head, and the metrics of a set of predictions."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import progress as _progress
from ..errors import UserInputError
from ..progress import Progress
from . import TrainConfig
from .data import Dataset
from .heads import FitResult, fit_head
from .search import SearchSpace, best_trial, head_config, leaderboard, open_study, run_search, training_arrays

__all__ = ["Clock", "SearchOutcome", "prediction_metrics", "progress_bar", "search_and_fit", "test_metrics"]


class Clock:
    """The run's budget: ``left()`` seconds remaining (None = unlimited)."""

    def __init__(self, budget_s: float | None):
        self.t0 = time.monotonic()
        self.budget_s = budget_s

    @property
    def deadline(self) -> float | None:
        return None if self.budget_s is None else self.t0 + self.budget_s

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float | None:
        return None if self.budget_s is None else self.budget_s - self.elapsed()

    def reserved(self, seconds: float) -> Clock:
        """The same clock with ``seconds`` held back at the end (for a later step)."""
        c = Clock(None if self.budget_s is None else self.budget_s - seconds)
        c.t0 = self.t0
        return c


@dataclass
class SearchOutcome:
    params: dict[str, Any]
    trial: int
    fit: FitResult
    leaderboard: list[dict[str, Any]]
    n_trials: int  # finished trials in the study
    ran_now: int  # trials run by this call (the rest were resumed)
    study_name: str
    storage: str


PROGRESS_FILE_ENV = "BUSHU_PROGRESS_FILE"


class _ProgressFile:
    """The current phase as JSON in the file $BUSHU_PROGRESS_FILE names (the web UI's jobs set it):
    {"phase", "step", "total", "best", "phase_started", "updated", "scores", "epochs"}; rewritten
    atomically, at most every half second, and at each phase's start and end. ``scores``: the validation
    score of each finished search trial; ``epochs``: one {"epoch", "val_accuracy", "val_loss", "train_loss"}
    per fine-tuning epoch (epoch 0: the frozen model)."""

    def __init__(self, path: str, label: str, total: float | None):
        self.path, self.last = path, 0.0
        try:
            old = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            old = {}
        now = time.time()
        self.state = {
            "phase": label,
            "step": 0,
            "total": total,
            "best": old.get("best"),
            "phase_started": now,
            "updated": now,
            "scores": old.get("scores", []),
            "epochs": old.get("epochs", []),
        }
        self.write()

    def advance(
        self, n: float, best: float | None = None, score: float | None = None, epoch: dict | None = None
    ) -> None:
        self.state["step"] += n
        if best is not None:
            self.state["best"] = best
        if score is not None:
            self.state["scores"].append(score)
        if epoch is not None:
            self.state["epochs"].append(epoch)
        if time.time() - self.last > 0.5 or score is not None or epoch is not None:
            self.write()

    def write(self) -> None:
        self.last = self.state["updated"] = time.time()
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self.state, f)
            os.replace(tmp, self.path)
        except OSError:
            pass  # progress is a courtesy: never fail training over it


@contextmanager
def progress_bar(progress: bool | Progress | None, label: str, total: float | None) -> Iterator[Any]:
    """The training steps' progress (see bushu.progress): yields ``advance(n=1, *, description=None,
    best=None, score=None, epoch=None)``; the phase also goes to $BUSHU_PROGRESS_FILE when that is set
    (``best``, ``score`` and ``epoch`` feed it: the web UI's jobs read it for their progress bar and charts)."""
    path = os.environ.get(PROGRESS_FILE_ENV)
    file = _ProgressFile(path, label, total) if path else None
    with _progress.task(progress, label, total) as inner:

        def advance(
            n: float = 1,
            *,
            description: str | None = None,
            best: float | None = None,
            score: float | None = None,
            epoch: dict | None = None,
        ) -> None:
            if file:
                file.advance(n, best, score, epoch)
            inner(n, description=description)

        try:
            yield advance
        finally:
            if file:
                file.write()


def study_identity(cfg: TrainConfig, ds: Dataset, space: SearchSpace, extra: Mapping[str, Any]) -> tuple[str, str]:
    """(storage URL, study name): same data + same search space -> same study (resume)."""
    key = json.dumps({"space": space.describe(), "seed": cfg.seed, **extra}, sort_keys=True, default=str)
    name = f"bushu-train-{ds.kind}-{ds.fingerprint()}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    if cfg.storage:
        return cfg.storage, name
    cfg.work.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(cfg.work / 'study.db').resolve()}", name


def search_and_fit(
    cfg: TrainConfig,
    ds: Dataset,
    space: SearchSpace,
    features: Mapping[str, Mapping[str, np.ndarray]],
    clock: Clock,
    echo,
    extra_identity: Mapping[str, Any] | None = None,
) -> SearchOutcome:
    storage, name = study_identity(cfg, ds, space, extra_identity or {})
    study = open_study(storage, name, cfg.seed)
    from optuna.trial import TrialState

    resumed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if resumed:
        echo(f"resuming the search: {resumed} finished trial(s) kept from an earlier run ({storage})")
    y_train = np.asarray([it.label for it in ds.train])
    y_val = np.asarray([it.label for it in ds.val])
    n_classes = len(ds.classes)
    total = cfg.trials if cfg.trials is not None else None
    best = {"acc": None}

    with progress_bar(cfg.progress, "search", total) as advance:
        if resumed and total:
            advance(min(resumed, total))

        def on_trial(t) -> None:
            if t.value is not None and t.state.name == "COMPLETE":
                best["acc"] = max(best["acc"] or 0.0, t.value)
            desc = f"search: trial {t.number} {t.state.name.lower()}" + (
                f", best val acc {best['acc']:.3f}" if best["acc"] is not None else ""
            )
            advance(1, description=desc, best=best["acc"], score=t.value if t.state.name == "COMPLETE" else None)

        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small heads: one thread is faster than two, and --jobs scale across cores
        try:
            ran = run_search(
                study,
                space,
                features,
                y_train,
                y_val,
                n_classes,
                trials=cfg.trials,
                deadline=clock.deadline,
                seed=cfg.seed,
                jobs=cfg.jobs,
                on_trial=on_trial,
            )
        finally:
            torch.set_num_threads(threads)
    bt = best_trial(study)
    if bt is None:
        raise UserInputError(
            f"no trial finished within the budget ({cfg.budget_s:.0f} s)" if cfg.budget_s else "no trial finished",
            hint=f"give a larger --budget; the features are cached in {cfg.work}, so a rerun starts searching at once",
        )
    params = dict(bt.params)
    hc = head_config(params, cfg.seed)
    fs = features[params["source"]]
    x, y = training_arrays(fs, y_train, hc.augment)
    torch.set_num_threads(1)  # same arithmetic as in the trial, so the head is reproduced exactly
    try:
        fit = fit_head(hc, x, y, fs["val"], y_val, n_classes)
    finally:
        torch.set_num_threads(threads)
    n_done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    return SearchOutcome(
        params=params,
        trial=bt.number,
        fit=fit,
        leaderboard=leaderboard(study),
        n_trials=n_done,
        ran_now=ran,
        study_name=name,
        storage=storage,
    )


def prediction_metrics(
    classes: Sequence[str], y_true: np.ndarray, logits: np.ndarray, sources: Sequence[str], worst: int = 20
) -> dict[str, Any]:
    """Accuracy, per-class P/R/F1, confusion matrix and the most confident mistakes."""
    from ..eval_ import classification_metrics, confusion
    from ..model.processing import softmax

    y_pred = logits.argmax(1)
    idx = list(range(len(classes)))
    m = classification_metrics(y_true, y_pred, idx)
    cm, _ = confusion(y_true, y_pred, idx)
    probs = softmax(logits.astype(np.float64))
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:worst]
    return {
        "accuracy": round(float(np.mean(y_pred == y_true)), 4),
        "n": int(len(y_true)),
        "per_class": [
            {
                "class": c,
                "precision": round(float(m["precision"][i]), 4),
                "recall": round(float(m["recall"][i]), 4),
                "f1": round(float(m["f1"][i]), 4),
                "support": int(m["support"][i]),
            }
            for i, c in enumerate(classes)
        ],
        "macro_f1": round(float(np.mean(m["f1"])), 4),
        "confusion": {"rows": list(classes), "columns": list(classes), "matrix": cm.tolist()},
        "mistakes": [
            {
                "path": sources[i],
                "true": classes[int(y_true[i])],
                "pred": classes[int(y_pred[i])],
                "score": round(float(probs[i, y_pred[i]]), 4),
            }
            for i in wrong.tolist()  # ints, to index the sequences
        ],
    }


def test_metrics(
    classes: Sequence[str], items: Sequence[Any], logits: np.ndarray | None, root: Path, split: str
) -> dict[str, Any] | None:
    """prediction_metrics on the held-out test part, with the accuracy's 95% Wilson interval; None without one."""
    if not items or logits is None:
        return None
    from ..eval_ import wilson_interval

    y = np.asarray([it.label for it in items])
    m = prediction_metrics(classes, y, logits, [relpath(it.source, root) for it in items])
    lo, hi = wilson_interval(int(np.sum(logits.argmax(1) == y)), len(y))
    return {**m, "ci95": [round(lo, 4), round(hi, 4)], "ci_method": "wilson", "split": split}


def relpath(p: str, root: Path) -> str:
    try:
        return str(Path(p).relative_to(root))
    except ValueError:
        return p
