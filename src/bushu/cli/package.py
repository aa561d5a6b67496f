"""`bushu package ART -o FILE`: an offline SDK bundle (model + predictor + CLI + container + manifests)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ._output import console, print_json


def _replicas(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    lo, sep, hi = value.partition(":")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected MIN:MAX, e.g. 1:4") from None
    if not 1 <= a <= b:
        raise click.BadParameter(f"{value!r}: need 1 <= MIN <= MAX")
    return a, b


@click.command("package")
@click.argument("art", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="Bundle to write: NAME.zip, NAME.tar.gz, or a directory (default: ./<name>-sdk-<version>.zip).",
)
@click.option("--name", help="Name of the SDK and of the served model (default: the artifact's name).")
@click.option("--version", "version", default="1.0.0", show_default=True, help="SDK version (PEP 440).")
@click.option(
    "--image", help="Container image tag for the Dockerfile and manifests (default: <name>-server:<version>)."
)
@click.option(
    "--replicas",
    default="1:4",
    show_default=True,
    callback=_replicas,
    help="Autoscaling range MIN:MAX for the HorizontalPodAutoscaler and the InferenceService.",
)
@click.option(
    "--cpu-target",
    default=70,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Scale out above this average CPU utilisation (percent).",
)
@click.option(
    "--storage-uri",
    help="KServe: load the model repository from this URI (s3://, gs://, pvc://) "
    "instead of the copy baked into the image.",
)
@click.option("--top-k", type=click.IntRange(1), help="Labels the SDK returns by default (default: the artifact's).")
@click.option(
    "--check",
    is_flag=True,
    help="Validate the Kubernetes and KServe manifests against their schemas (needs bushu[package]).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(
    art: Path,
    out: Path | None,
    name: str | None,
    version: str,
    image: str | None,
    replicas: tuple[int, int],
    cpu_target: int,
    storage_uri: str | None,
    top_k: int | None,
    check: bool,
    as_json: bool,
) -> None:
    """Package artifact ART as an offline SDK: the ONNX model, its pre/post-processing and labels, a
    Python predictor and a `<name>-predict` command for its images, texts or audio clips that need only
    onnxruntime and numpy (plus Pillow for images and clips, tokenizers for MiniLM text models), a
    README, SHA-256 checksums, a Dockerfile for `bushu serve`, and Kubernetes/KServe manifests.

    Install it anywhere with `pip install FILE` (no PyTorch, no bushu, no network)."""
    from ..model.artifact import Artifact
    from ..package.bundle import PackageConfig, build_bundle, names_for, usage

    artifact = Artifact.load(art)
    cfg = PackageConfig(
        name=name,
        version=version,
        image=image,
        min_replicas=replicas[0],
        max_replicas=replicas[1],
        cpu_target=cpu_target,
        storage_uri=storage_uri,
        top_k=top_k,
    )
    if out is None:
        _, dist, _, _ = names_for(name or artifact.name)
        out = Path(f"{dist}-{version}.zip")
    with console.status(f"packaging {art} …"):
        bundle = build_bundle(artifact, out, cfg, validate=check)
    if as_json:
        print_json({**bundle.summary(), "checked": check})
        return
    console.print(
        f"[green]✓[/] wrote {escape(str(bundle.path))} ({bundle.size_bytes / 1e6:.1f} MB, "
        f"{len(bundle.files)} files{', manifests validated' if check else ''})"
    )
    console.print(f"  install:  pip install {escape(str(bundle.path))}", soft_wrap=True)
    words = usage(artifact.preprocess)
    console.print(f"  predict:  {bundle.script} {escape(words['ex_cli'])}", soft_wrap=True)
    call = "predict" if artifact.task == "classification" else "run"  # run: every output by name
    console.print(
        f"  python:   from {bundle.package} import Predictor; Predictor().{call}({escape(words['py1'])})",
        soft_wrap=True,
    )
    console.print(
        "  serve:    docker build -f deploy/Dockerfile -t IMAGE .  (inside the unpacked bundle); "
        "kubectl apply -f deploy/kubernetes/  or  deploy/kserve/",
        soft_wrap=True,
    )
