"""Audio clips -> log-mel spectrogram images, with numpy (and the stdlib ``wave``) only.

The same code runs at training, `bushu eval` and serving time, so a served audio model sees exactly
the pixels it was trained on: decode -> mono -> resample to ``sample_rate`` -> pad/crop to
``duration`` -> power STFT -> mel filterbank -> dB, top ``top_db`` kept -> [0, 255] greyscale image
(low frequencies at the bottom) -> resized to the backbone's square input.
``soundfile`` (if installed) also reads FLAC and float WAV.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, UserInputError

__all__ = [
    "AUDIO_SUFFIXES",
    "DEFAULT_SPECTROGRAM",
    "UNSUPPORTED_AUDIO",
    "audio_image",
    "load_audio",
    "log_mel",
    "mel_filterbank",
    "resample",
]

AUDIO_SUFFIXES = (".wav", ".flac")
UNSUPPORTED_AUDIO = (".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif", ".amr", ".webm")
DEFAULT_SPECTROGRAM: dict[str, Any] = {
    "sample_rate": 16000,
    "duration": 1.0,
    "n_fft": 400,
    "hop_length": 160,
    "n_mels": 64,
    "fmin": 20.0,
    "fmax": 8000.0,
    "top_db": 80.0,
}


def load_audio(src: str | Path | bytes) -> tuple[np.ndarray, int]:
    """A .wav/.flac file or its bytes -> (mono float32 samples in [-1, 1], sample rate)."""
    name = "the uploaded bytes" if isinstance(src, (bytes, bytearray)) else str(src)
    if not isinstance(src, (bytes, bytearray)) and Path(src).suffix.lower() in UNSUPPORTED_AUDIO:
        raise UserInputError(
            f"unsupported audio format {Path(src).suffix} ({name})",
            hint="convert it to .wav or .flac, e.g. ffmpeg -i in.mp3 -ar 16000 out.wav",
        )
    raw = bytes(src) if isinstance(src, (bytes, bytearray)) else Path(src).read_bytes()
    if not raw:
        raise UserInputError(f"{name} is empty", hint="send a .wav (or .flac) clip")
    try:
        import soundfile as sf
    except ImportError:
        sf = None
    if sf is not None:
        try:
            x, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - libsndfile errors: not audio, truncated, unknown format
            raise UserInputError(
                f"cannot decode {name} as audio: {str(e).splitlines()[0][:200]}", hint="send a .wav or .flac clip"
            ) from e
        return _mono(x), int(sr)
    if raw[:4] == b"fLaC":
        raise MissingDependencyError("FLAC audio (soundfile)", "train", package="soundfile")
    try:
        with wave.open(io.BytesIO(raw)) as w:
            sr, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            frames = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise UserInputError(
            f"cannot decode {name} as a PCM .wav: {e}",
            hint="send 8/16/24/32-bit PCM .wav, or install soundfile for float WAV and FLAC",
        ) from e
    if width == 3:  # 24-bit: widen to 32 by putting the 3 bytes in the top of an int32
        b = np.frombuffer(frames, np.uint8).reshape(-1, 3)
        x = (np.pad(b, ((0, 0), (1, 0))).copy().view("<i4")[:, 0]).astype(np.float32) / 2**31
    elif width == 1:
        x = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128) / 128
    else:
        dt = {2: "<i2", 4: "<i4"}[width]
        x = np.frombuffer(frames, dt).astype(np.float32) / float(2 ** (8 * width - 1))
    if x.size == 0 or sr <= 0:
        raise UserInputError(f"{name} has no audio samples", hint="send a non-empty .wav clip")
    return _mono(x.reshape(-1, ch)), int(sr)


def _mono(x: np.ndarray) -> np.ndarray:
    if x.shape[0] == 0:
        raise UserInputError("the audio clip has no samples", hint="send a non-empty .wav clip")
    return np.ascontiguousarray(x.mean(axis=1), dtype=np.float32)


def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Band-limited (FFT) resampling: no aliasing when going down, e.g. 22050 -> 16000 Hz."""
    if sr == target:
        return x.astype(np.float32)
    n_out = max(1, int(round(len(x) * target / sr)))
    spec = np.fft.rfft(x.astype(np.float64))
    keep = min(len(spec), n_out // 2 + 1)
    out = np.zeros(n_out // 2 + 1, np.complex128)
    out[:keep] = spec[:keep]
    return (np.fft.irfft(out, n_out) * (n_out / len(x))).astype(np.float32)


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters equally spaced on the HTK mel scale, area-normalised."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(min(fmax, sr / 2)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down))
    return (fb * (2.0 / (hi - lo))).astype(np.float32)  # Slaney-style: equal area per filter


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Pad with silence at the end, or keep the loudest ``n``-sample window (the word, not the silence)."""
    if len(x) <= n:
        return np.pad(x, (0, n - len(x)))
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    hop = max(1, n // 20)
    starts = np.arange(0, len(x) - n + 1, hop)
    best = int(starts[np.argmax(energy[starts + n] - energy[starts])])
    return x[best : best + n]


def log_mel(x: np.ndarray, sr: int, p: Mapping[str, Any]) -> np.ndarray:
    """Samples -> [n_mels, frames] log-mel power in dB, relative to the clip's maximum (0 dB = loudest)."""
    target = int(p["sample_rate"])
    x = _fit(resample(x, sr, target), int(round(float(p["duration"]) * target)))
    n_fft, hop = int(p["n_fft"]), int(p["hop_length"])
    x = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None] + hop * np.arange(n_frames)[:, None]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2  # [frames, n_fft // 2 + 1]
    mel = mel_filterbank(target, n_fft, int(p["n_mels"]), float(p["fmin"]), float(p["fmax"])) @ power.T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    top = float(p["top_db"])
    ref = max(float(db.max()), -100.0 + top)  # silence stays dark instead of being scaled up to full brightness
    return np.maximum(db - ref, -top).astype(np.float32)


def audio_image(src: str | Path | bytes, p: Mapping[str, Any], size: int):
    """A clip -> the spectrogram as a ``size`` x ``size`` RGB PIL image (what the image backbone sees)."""
    from PIL import Image

    x, sr = load_audio(src)
    db = log_mel(x, sr, p)
    top = float(p["top_db"])
    pixels = np.round((db + top) / top * 255.0).clip(0, 255).astype(np.uint8)[::-1]  # low frequencies at the bottom
    return (
        Image.fromarray(np.ascontiguousarray(pixels), "L")
        .resize((size, size), Image.Resampling.BILINEAR)
        .convert("RGB")
    )
