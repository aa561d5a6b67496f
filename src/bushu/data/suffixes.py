"""The file suffixes bushu reads, by kind of data: the one table every reader, scanner and hint uses."""

from __future__ import annotations

from ..model.audio import AUDIO_SUFFIXES, UNSUPPORTED_AUDIO

__all__ = [
    "ARRAY_SUFFIXES",
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "SUFFIXES",
    "TEXT_SUFFIXES",
    "UNSUPPORTED_AUDIO",
    "suffix_list",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)
# Audio's suffixes (read, and listed-but-unsupported) are defined in model/audio.py, which the packaged
# SDK copies whole and so may import nothing of bushu but its errors.
ARRAY_SUFFIXES = (".npy", ".npz")

#: kind -> the suffixes a labelled folder of that kind is scanned for
SUFFIXES: dict[str, tuple[str, ...]] = {
    "image": IMAGE_SUFFIXES,
    "text": TEXT_SUFFIXES,
    "audio": AUDIO_SUFFIXES + UNSUPPORTED_AUDIO,
}


def suffix_list(kind: str, n: int = 5) -> str:
    """The first ``n`` suffixes of a kind for messages: ``jpg/jpeg/png/bmp/webp``."""
    return "/".join(s[1:] for s in SUFFIXES[kind][:n])
