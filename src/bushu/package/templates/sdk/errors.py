"""The SDK's errors. ``UserInputError`` and ``MissingDependencyError`` take the arguments bushu's do, so
the pre-processing modules copied from bushu (audio.py, text.py) run here unchanged."""

from __future__ import annotations

from typing import Optional

__all__ = ["ChecksumError", "MissingDependencyError", "PredictorError", "UserInputError"]


class PredictorError(Exception):
    """A problem with the model files or the input; the message says what to do."""


class ChecksumError(PredictorError):
    """A model file does not match the checksum recorded when the bundle was made."""


class UserInputError(PredictorError):
    """An input that cannot be read (not a text, not a decodable clip or image)."""

    def __init__(self, message: str, *, hint: Optional[str] = None):
        super().__init__(f"{message} ({hint})" if hint else message)


class MissingDependencyError(PredictorError):
    """An optional package this input needs is not installed."""

    def __init__(self, what: str, extra: str = "", package: Optional[str] = None):
        super().__init__(f"{what} needs a package that is not installed: pip install {package or extra}")
