"""`bushu train DATA -o ART`: transfer learning with automatic model search on labelled examples."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ._output import console, err_console, print_json


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@click.command("train")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Artifact directory to write.")
@click.option(
    "--budget",
    default="5m",
    show_default=True,
    help="Wall-clock budget for the whole run: seconds (300) or a duration (90s, 5m, 1h); 'none' = no limit.",
)
@click.option(
    "--trials",
    default=30,
    show_default=True,
    type=int,
    help="Stop after this many finished trials (counting those of a resumed run); 0 = only the budget.",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "image", "text", "audio", "detection"]),
    default="auto",
    show_default=True,
    help="What DATA holds; auto recognises detection layouts (COCO JSON, YOLO data.yaml + "
    "labels/, VOC Annotations/), else guesses from the file suffixes.",
)
@click.option(
    "--backbone",
    "sources",
    help="Comma-separated feature sources to search: image backbones "
    "(efficientnet_lite0,mobilenet_v2,efficientnet_lite1,efficientnet_lite2; also for audio, on log-mel "
    "spectrograms) or text features (minilm,tfidf).",
)
@click.option(
    "--head",
    "heads",
    default="logreg,linear,mlp",
    show_default=True,
    help="Head types to search: logreg (exact logistic regression), linear (SGD), mlp.",
)
@click.option(
    "--image-size",
    type=int,
    help="Input size in pixels (default: each backbone's own, 224-260). Smaller (e.g. 128) is faster on a CPU.",
)
@click.option(
    "--val",
    type=click.Path(path_type=Path),
    help="Validation folder (or CSV); default: DATA/val if DATA has train/ and val/, else a stratified split of DATA.",
)
@click.option("--val-fraction", default=0.2, show_default=True, type=float)
@click.option(
    "--test",
    type=click.Path(path_type=Path),
    help="Test folder (or CSV) that only the final model sees; "
    "default: DATA/test if DATA has train/, else --test-size of DATA.",
)
@click.option(
    "--test-size",
    "test_size",
    type=float,
    help="Fraction held out as the test part (stratified, seeded); "
    "nothing in training sees it. Default 0.2 when DATA is split here, 0 with a given val folder; 0 = none.",
)
@click.option(
    "--no-augment",
    is_flag=True,
    help="No augmentation: neither flipped copies in the feature search nor crops/flips/colour jitter (time shifts for audio) in fine-tuning.",
)
@click.option(
    "--no-finetune",
    is_flag=True,
    help="Do not fine-tune the top blocks of the chosen backbone after the "
    "search (by default they are, when the budget allows, and kept only if better on validation).",
)
@click.option(
    "--finetune-blocks",
    default=2,
    show_default=True,
    type=click.IntRange(1, 10),
    help="How many of the backbone's last blocks fine-tuning trains (with the head).",
)
@click.option(
    "--other",
    is_flag=True,
    help="Add an 'other' class of generic photos, so the model can answer 'none of these' (images).",
)
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1), help="Trials run in parallel (threads).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--work-dir", type=click.Path(path_type=Path), help="Feature cache and search state (default: OUT.work).")
@click.option(
    "--storage",
    help="Optuna storage URL shared by several workers, e.g. postgresql://host/db (default: sqlite:///WORK/study.db).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(
    data: Path,
    out: Path,
    budget: str,
    trials: int,
    kind: str,
    sources: str | None,
    heads: str,
    image_size: int | None,
    val: Path | None,
    val_fraction: float,
    test: Path | None,
    test_size: float | None,
    no_augment: bool,
    no_finetune: bool,
    finetune_blocks: int,
    other: bool,
    jobs: int,
    seed: int,
    work_dir: Path | None,
    storage: str | None,
    as_json: bool,
) -> None:
    """Train a classifier on DATA (DATA/<class>/<file>: images, .txt or .wav/.flac clips; or a text,label CSV),
    or a detector on boxed images (COCO JSON, YOLO txt + data.yaml, Pascal VOC XML).

    Features from pretrained models are extracted once and cached; Optuna searches feature source x head x
    learning rate x batch size x epochs within --budget / --trials. Interrupted? Run the same command again:
    finished trials are kept. The artifact works with bushu eval, serve, optimize.

    JSON keys: val_accuracy, macro_f1, test_accuracy, test_ci95 (95% Wilson interval), test_macro_f1, test
    (per_class, confusion, mistakes on the test part), n_train, n_val, n_test, classes, best, trials, seconds,
    per_class, confusion,
    mistakes, leaderboard, data_check, artifact, report.
    """
    import warnings

    from ..errors import UserInputError
    from ..train import TrainConfig, parse_budget, train
    from ..train.heads import HEADS

    head_list = _csv(heads) or HEADS
    bad = [h for h in head_list if h not in HEADS]
    if bad:
        from ..errors import UnknownNameError

        raise UnknownNameError("head", bad[0], HEADS)
    if out.exists() and out.resolve() == data.resolve():
        raise UserInputError("-o must not be the data folder")
    cfg = TrainConfig(
        data=data,
        out=out,
        kind=kind,
        val=val,
        val_fraction=val_fraction,
        test=test,
        test_fraction=test_size,
        budget_s=parse_budget(budget),
        trials=trials or None,
        sources=_csv(sources),
        heads=head_list,
        image_size=image_size,
        augment=not no_augment,
        finetune=not no_finetune,
        finetune_blocks=finetune_blocks,
        other=other,
        jobs=jobs,
        seed=seed,
        work_dir=work_dir,
        storage=storage,
        progress=not as_json,
    )

    def echo(msg: str) -> None:
        err_console.print(msg, markup=False, highlight=False) if as_json else console.print(msg, markup=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train(cfg, echo=echo)
    if as_json:
        print_json(summary)
        return
    (_print_detection_summary if summary["kind"] == "detection" else _print_summary)(summary)
    # one line each, never wrapped at the console's width: the UI shows a job's last log line as its latest output,
    # and a wrapped line's tail ("... to a repository)") says nothing there
    console.print(f"wrote {summary['artifact']} and {summary['report']}", soft_wrap=True)
    if summary["kind"] == "detection":
        console.print(
            f"next: bushu eval {out} --data DIR  |  bushu serve REPO (after adding {out} to a repository), "
            f"then POST an image to /v1/models/NAME:detect",
            soft_wrap=True,
        )
    elif summary["kind"] == "image":
        console.print(
            f"next: bushu eval {out} --data DIR  |  bushu optimize {out} -o {out}-int8  |  "
            f"bushu serve REPO (after adding {out} to a repository)",
            soft_wrap=True,
        )
    else:  # text and audio models take raw strings / .wav clips at :classify
        console.print(
            f"next: bushu eval {out} --data DIR  |  bushu serve REPO (after adding {out} to a repository), "
            f"then POST a {'text' if summary['kind'] == 'text' else '.wav clip'} to /v1/models/NAME:classify",
            soft_wrap=True,
        )


def _print_summary(s: Mapping[str, Any]) -> None:
    from ..train.report import finetune_line, test_line, trial_params
    from ._output import table

    b = s["best"]
    console.print(
        f"[bold]val accuracy {s['val_accuracy']:.4f}[/] (ONNX Runtime, {s['n_val']} validation examples), "
        f"macro F1 {s['macro_f1']:.4f}; best trial {b['trial']}: {b['source']} + {b['head']} head, "
        f"{trial_params(b)}; {s['trials']} trials "
        f"({s['trials_this_run']} this run) in {s['seconds']:.0f} s"
    )
    console.print(test_line(s), markup=False, highlight=False)
    if s.get("finetune"):
        console.print(finetune_line(s["finetune"]), markup=False, highlight=False)
    table(
        s["leaderboard"][:10],
        ["trial", "source", "head", "C", "lr", "epochs", "val_accuracy", "val_loss", "state"],
        title="leaderboard (top 10)",
    )
    table(s["per_class"], ["class", "precision", "recall", "f1", "support"], title="per class (validation)")
    if s.get("test"):
        table(s["test"]["per_class"], ["class", "precision", "recall", "f1", "support"], title="per class (test)")
    cm = s["confusion"]
    table(
        [{"true \\ pred": r, **dict(zip(cm["columns"], row))} for r, row in zip(cm["rows"], cm["matrix"])],
        ["true \\ pred", *cm["columns"]],
        title="confusion matrix",
    )
    if s["mistakes"]:
        table(s["mistakes"][:10], ["path", "true", "pred", "score"], title="worst mistakes")


def _print_detection_summary(s: Mapping[str, Any]) -> None:
    from ._output import table

    b = s["best"]
    console.print(
        f"[bold]held-back mAP@0.5 {s['test_map50']:.4f}[/], mAP@0.5:0.95 {s['test_map']:.4f} (ONNX Runtime, "
        f"{s['n_test']} images the search never saw); best trial {b['trial']}: {b['backbone']} @{b['size']}px, "
        f"lr {b['lr']:.3g}, validation mAP@0.5 {b['val_map50']:.4f}; {s['trials']} trials "
        f"({s['trials_this_run']} this run) in {s['seconds']:.0f} s"
    )
    table(
        s["leaderboard"][:10],
        ["trial", "backbone", "size", "lr", "val_map50", "val_map", "epochs", "state"],
        title="leaderboard (top 10)",
    )
    table(
        [{"class": p["class"], "ap50": p["ap50"], "ap": p["ap"], "boxes": p["n_gt"]} for p in s["per_class"]],
        ["class", "ap50", "ap", "boxes"],
        title="per class (held-back split)",
    )
