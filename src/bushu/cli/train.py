"""`bushu train DATA -o ART`: transfer learning with automatic model search on labelled examples."""

from __future__ import annotations

from pathlib import Path

import click

from ._output import console, err_console, print_json


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@click.command("train")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Artifact directory to write.")
@click.option("--budget", default="5m", show_default=True,
              help="Wall-clock budget for the whole run: seconds (300) or a duration (90s, 5m, 1h); 'none' = no limit.")
@click.option("--trials", default=30, show_default=True, type=int,
              help="Stop after this many finished trials (counting those of a resumed run); 0 = only the budget.")
@click.option("--kind", type=click.Choice(["auto", "image", "text", "audio"]), default="auto", show_default=True,
              help="What DATA holds; auto guesses from the file suffixes.")
@click.option("--backbone", "sources", help="Comma-separated feature sources to search: image backbones "
              "(efficientnet_lite0,mobilenet_v2,efficientnet_lite1,efficientnet_lite2; also for audio, on log-mel "
              "spectrograms) or text features (minilm,tfidf).")
@click.option("--head", "heads", default="logreg,linear,mlp", show_default=True,
              help="Head types to search: logreg (exact logistic regression), linear (SGD), mlp.")
@click.option("--image-size", type=int, help="Input size in pixels (default: each backbone's own, 224-260). "
              "Smaller (e.g. 128) is faster on a CPU.")
@click.option("--val", type=click.Path(path_type=Path), help="Validation folder (or CSV); default: DATA/val if "
              "DATA has train/ and val/, else a stratified split of DATA.")
@click.option("--val-fraction", default=0.2, show_default=True, type=float)
@click.option("--no-augment", is_flag=True, help="No augmentation: neither flipped copies in the feature search nor crops/flips/colour jitter (time shifts for audio) in fine-tuning.")
@click.option("--no-finetune", is_flag=True, help="Do not fine-tune the top blocks of the chosen backbone after the "
              "search (by default they are, when the budget allows, and kept only if better on validation).")
@click.option("--finetune-blocks", default=2, show_default=True, type=click.IntRange(1, 10),
              help="How many of the backbone's last blocks fine-tuning trains (with the head).")
@click.option("--other", is_flag=True, help="Add an 'other' class of generic photos, so the model can answer "
              "'none of these' (images).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1), help="Trials run in parallel (threads).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--work-dir", type=click.Path(path_type=Path), help="Feature cache and search state (default: OUT.work).")
@click.option("--storage", help="Optuna storage URL shared by several workers, e.g. postgresql://host/db "
              "(default: sqlite:///WORK/study.db).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(data: Path, out: Path, budget: str, trials: int, kind: str, sources: str | None, heads: str,
            image_size: int | None, val: Path | None, val_fraction: float, no_augment: bool, no_finetune: bool,
            finetune_blocks: int, other: bool, jobs: int, seed: int,
            work_dir: Path | None, storage: str | None, as_json: bool) -> None:
    """Train a classifier on DATA (DATA/<class>/<file>: images, .txt or .wav/.flac clips; or a text,label CSV).

    Features from pretrained models are extracted once and cached; Optuna searches feature source x head x
    learning rate x batch size x epochs within --budget / --trials. Interrupted? Run the same command again:
    finished trials are kept. The artifact works with bushu eval, serve, optimize.

    JSON keys: val_accuracy, macro_f1, n_train, n_val, classes, best, trials, seconds, per_class, confusion,
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
    cfg = TrainConfig(data=data, out=out, kind=kind, val=val, val_fraction=val_fraction,
                      budget_s=parse_budget(budget), trials=trials or None, sources=_csv(sources),
                      heads=head_list, image_size=image_size, augment=not no_augment,
                      finetune=not no_finetune, finetune_blocks=finetune_blocks, other=other, jobs=jobs, seed=seed,
                      work_dir=work_dir, storage=storage, progress=not as_json)

    def echo(msg: str) -> None:
        err_console.print(msg, markup=False, highlight=False) if as_json else console.print(msg, markup=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train(cfg, echo=echo)
    if as_json:
        print_json(summary)
        return
    from ..train.report import print_summary

    print_summary(summary)
    console.print(f"wrote {summary['artifact']} and {summary['report']}")
    if summary["kind"] == "image":
        console.print(f"next: bushu eval {out} --data DIR  |  bushu optimize {out} -o {out}-int8  |  "
                      f"bushu serve REPO (after adding {out} to a repository)")
    else:  # text and audio models take raw strings / .wav clips at :classify
        console.print(f"next: bushu eval {out} --data DIR  |  bushu serve REPO (after adding {out} to a repository), "
                      f"then POST a {'text' if summary['kind'] == 'text' else '.wav clip'} to /v1/models/NAME:classify")
