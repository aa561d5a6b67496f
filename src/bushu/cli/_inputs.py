"""``--input NAME:SHAPE[:DTYPE]`` and ``--sample FILE.npz``, shared by every command that runs the model."""

from __future__ import annotations

import functools
from pathlib import Path

import click

INPUT_HELP = (
    "Shape (and dtype) of one model input, repeatable: images:1x3x640x640, input_ids:1x128:int64; "
    "several comma-separated shapes make a sweep (bench runs each): input_ids:1x16,1x128."
)
SAMPLE_HELP = (
    "A .npz of real arrays by input name (np.savez(FILE, input_ids=..., ...)) to run instead of derived inputs."
)


def input_options(fn):
    """Add --input/--sample to a click command; the command receives ``inputs`` (a bushu.inputs.InputRequest)."""

    @click.option("--input", "input_args", multiple=True, metavar="NAME:SHAPE[:DTYPE]", help=INPUT_HELP)
    @click.option("--sample", "sample_file", type=click.Path(path_type=Path), metavar="FILE.npz", help=SAMPLE_HELP)
    @functools.wraps(fn)
    def wrapper(*args, input_args: tuple[str, ...] = (), sample_file: Path | None = None, **kwargs):
        from ..inputs import InputRequest

        return fn(*args, inputs=InputRequest.parse(input_args, sample_file), **kwargs)

    return wrapper
