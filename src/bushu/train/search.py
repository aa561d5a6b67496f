"""Model search with Optuna over cached features: feature source (backbone) x head x hyperparameters.

The study lives in SQLite under the work directory (or any Optuna storage URL), named after the
data and the search space, so an interrupted `bushu train` resumes with every finished trial kept:
trials left RUNNING by a killed process are marked FAIL and the search continues to the requested
number of trials. Several processes (or machines sharing an RDB storage URL) can run the same
study at once; Optuna hands each its own trials.

TPE proposes the parameters; the median pruner stops trials whose validation accuracy at an epoch
falls below the median of earlier trials at that epoch.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .heads import HeadConfig, fit_head

__all__ = ["SearchSpace", "best_trial", "head_config", "leaderboard", "open_study", "run_search"]


@dataclass(frozen=True)
class SearchSpace:
    sources: tuple[str, ...]  # feature sources (backbones / text encoders)
    heads: tuple[str, ...] = ("logreg", "linear", "mlp")
    augment: bool = True  # whether flipped copies exist (images)

    def describe(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "heads": list(self.heads),
            "augment": self.augment,
            "standardize": [True, False],
            "logreg_C": [1e-3, 1e3],
            "lr": [1e-4, 3e-2],
            "weight_decay": [1e-6, 1e-1],
            "epochs": [20, 200],
            "batch_size": [8, 16, 32, 64],
            "mlp_hidden": [128, 256, 512],
            "mlp_dropout": [0.0, 0.5],
        }


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise MissingDependencyError("bushu train (model search)", "train") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    return optuna


HEARTBEAT_S = 5  # a worker's running trials send a heartbeat this often...
GRACE_S = 20  # ...and are failed (to be redone) once it has been silent this long: the worker died


def open_study(storage: str, name: str, seed: int):
    """Create or reopen the study. Trials whose worker died (no heartbeat for GRACE_S) are marked FAIL and
    redone; the live trials of other workers sharing the study (``--storage``) are left alone."""
    optuna = _optuna()

    if isinstance(storage, str) and "://" in storage:  # an RDB URL (sqlite, postgresql, mysql)
        with warnings.catch_warnings():  # heartbeats are 'experimental' too, and the way to find dead workers
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(storage, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=10),
    )
    with warnings.catch_warnings():  # 'experimental' since Optuna 2.9, still the documented way
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    return study


def head_config(params: Mapping[str, Any], seed: int) -> HeadConfig:
    return HeadConfig(
        kind=params["head"],
        lr=params.get("lr", 0.0),
        epochs=params.get("epochs", 1),
        batch_size=params.get("batch_size", 32),
        weight_decay=params.get("weight_decay", 0.0),
        hidden=params.get("hidden", 256),
        dropout=params.get("dropout", 0.0),
        augment=params.get("augment", False),
        standardize=params.get("standardize", True),
        C=params.get("C", 1.0),
        seed=seed,
    )


def training_arrays(fs: Mapping[str, np.ndarray], y_train: np.ndarray, augment: bool) -> tuple[np.ndarray, np.ndarray]:
    if augment and "train_flip" in fs:
        return np.concatenate([fs["train"], fs["train_flip"]]), np.concatenate([y_train, y_train])
    return fs["train"], y_train


def run_search(
    study,
    space: SearchSpace,
    features: Mapping[str, Mapping[str, np.ndarray]],
    y_train: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    *,
    trials: int | None,
    deadline: float | None,
    seed: int,
    jobs: int = 1,
    on_trial: Callable[[Any], None] | None = None,
) -> int:
    """Run trials until ``trials`` finished ones exist in the study or ``deadline`` (time.monotonic) passes.

    Returns the number of trials run by this call.
    """
    optuna = _optuna()
    from optuna.trial import TrialState

    done_states = (TrialState.COMPLETE, TrialState.PRUNED)
    before = len(study.trials)
    if not study.get_trials(deepcopy=False):  # a sensible first trial per source: the few-shot baseline
        first = "logreg" if "logreg" in space.heads else space.heads[0]
        for src in space.sources:
            base = {
                "source": src,
                "head": first,
                "standardize": first != "logreg",
                **({"augment": True} if space.augment else {}),
            }
            base.update(
                {"C": 1.0} if first == "logreg" else {"lr": 3e-3, "epochs": 100, "batch_size": 16, "weight_decay": 1e-3}
            )
            study.enqueue_trial(base)

    def objective(trial) -> float:
        params = {
            "source": trial.suggest_categorical("source", list(space.sources)),
            "head": trial.suggest_categorical("head", list(space.heads)),
            "standardize": trial.suggest_categorical("standardize", [True, False]),
        }
        if params["head"] == "logreg":
            params["C"] = trial.suggest_float("C", 1e-3, 1e3, log=True)
        else:
            params.update(
                {
                    "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
                    "epochs": trial.suggest_int("epochs", 20, 200, step=10),
                    "batch_size": trial.suggest_categorical("batch_size", [8, 16, 32, 64]),
                    "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
                }
            )
        if params["head"] == "mlp":
            params["hidden"] = trial.suggest_categorical("hidden", [128, 256, 512])
            params["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
        if space.augment:
            params["augment"] = trial.suggest_categorical("augment", [True, False])
        cfg = head_config(params, seed)
        fs = features[params["source"]]
        x, y = training_arrays(fs, y_train, cfg.augment)

        def report(epoch: int, acc: float) -> None:
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        t0 = time.perf_counter()
        res = fit_head(cfg, x, y, fs["val"], y_val, n_classes, report=report)
        trial.set_user_attr("val_loss", res.val_loss)
        trial.set_user_attr("best_epoch", res.best_epoch)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        return res.val_accuracy

    finished = len(study.get_trials(deepcopy=False, states=done_states))
    left = None if trials is None else trials - finished
    timeout = None if deadline is None else deadline - time.monotonic()
    if (left is not None and left <= 0) or (timeout is not None and timeout <= 0):
        return 0
    if left is None and timeout is None:
        raise ValueError("give a number of trials or a deadline")
    study.optimize(
        objective,
        n_trials=left,
        timeout=timeout,
        n_jobs=jobs,
        catch=(RuntimeError, ValueError),
        gc_after_trial=False,
        callbacks=[lambda s, t: on_trial(t)] if on_trial else None,
    )
    return len(study.trials) - before


def best_trial(study):
    """The finished trial with the best validation accuracy; ties go to the lower validation loss."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    return max(done, key=lambda t: (t.value, -t.user_attrs.get("val_loss", float("inf")), -t.number))


def leaderboard(study, limit: int | None = None) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        p = t.params
        rows.append(
            {
                "trial": t.number,
                "source": p.get("source"),
                "head": p.get("head"),
                "standardize": p.get("standardize"),
                "C": _round(p.get("C")),
                "lr": _round(p.get("lr")),
                "batch_size": p.get("batch_size"),
                "weight_decay": _round(p.get("weight_decay")),
                "augment": p.get("augment"),
                "epochs": t.user_attrs.get("best_epoch"),
                "max_epochs": p.get("epochs"),
                "val_accuracy": None if t.value is None else round(float(t.value), 4),
                "val_loss": _round(t.user_attrs.get("val_loss")),
                "state": t.state.name.lower(),
                "seconds": t.user_attrs.get("seconds"),
            }
        )
    order = {"complete": 0, "pruned": 1, "fail": 2}
    rows.sort(key=lambda r: (order[r["state"]], -(r["val_accuracy"] or 0), r["val_loss"] or 9e9, r["trial"]))
    return rows[:limit] if limit else rows


def _round(v: Any) -> Any:
    return float(f"{v:.4g}") if isinstance(v, float) else v
