"""Class folders -> the model's output indices: by name (exactly, then ignoring case, ``_`` and ``-``),
or through a label map. `bushu eval`, `optimize`, `plan` and `export` map folders the same way."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ..errors import UserInputError, did_you_mean

__all__ = ["match_classes"]


def _norm(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", s).strip().lower()


def match_classes(
    folders: Sequence[str],
    labels: Sequence[str] | None,
    n_outputs: int,
    label_map: Mapping[str, str | int] | None = None,
) -> dict[str, int]:
    """Folder name → output index; a UserInputError naming every folder that matches no label."""
    label_map = dict(label_map or {})
    exact = {lbl: i for i, lbl in reversed(list(enumerate(labels or [])))}  # first occurrence wins
    loose = {_norm(lbl): i for i, lbl in reversed(list(enumerate(labels or [])))}
    out, bad = {}, []
    for folder in folders:
        target = label_map.get(folder, folder)
        if isinstance(target, int) or (isinstance(target, str) and target.isdigit() and not labels):
            idx = int(target)
        else:
            idx = exact.get(str(target), loose.get(_norm(str(target)), -1))
        if not 0 <= idx < n_outputs:
            bad.append(str(target))
            continue
        out[folder] = idx
    if bad:
        if labels:
            parts = []
            for b in bad:
                close = did_you_mean(_norm(b), list(loose), n=3)
                parts.append(
                    f"{b!r}"
                    + (f" (did you mean {' or '.join(repr(labels[loose[c]]) for c in close)}?)" if close else "")
                )
            msg = f"class folder(s) not among the model's {len(labels)} labels: {', '.join(parts)}"
        else:
            msg = (
                f"the model has no labels, so class folders must be output indices 0..{n_outputs - 1}; "
                f"got {', '.join(map(repr, bad))}"
            )
        raise UserInputError(
            msg,
            hint="rename the folders to label names, or pass `label_map` (MAP.yaml) "
            "mapping each folder to a label (or an output index)",
        )
    return out
