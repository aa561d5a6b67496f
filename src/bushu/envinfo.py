"""The environment a model runs in: CPU, instruction sets, memory, GPU, OS and installed runtimes.

``environment()`` is what `bushu env` prints; ``summary()`` is the short form every report records.
Nothing here fails when a probe is unavailable (no /proc, no nvidia-smi): the field says so instead.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["ARM_ISA_FLAGS", "ISA_FLAGS", "cpu_info", "environment", "gpu_info", "summary"]

# The instruction sets that decide which kernels a runtime can use (int8 VNNI, bf16, AMX tiles).
ISA_FLAGS = (
    "sse4_2",
    "fma",
    "avx2",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
ARM_ISA_FLAGS = ("neon", "asimd", "asimddp", "sve", "sve2", "bf16", "i8mm")


def _parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name and flags from Linux /proc/cpuinfo text (x86 'flags', ARM 'Features')."""
    model: str | None = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model": model, "flags": flags}


def cpu_info(cpuinfo_text: str | None = None) -> dict[str, Any]:
    import psutil

    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo_text = ""
    parsed = _parse_cpuinfo(cpuinfo_text)
    flags = parsed["flags"]
    model = parsed["model"] or platform.processor() or platform.machine() or "unknown"
    arm = platform.machine().lower() in ("arm64", "aarch64") or (
        not flags & set(ISA_FLAGS) and bool(flags & set(ARM_ISA_FLAGS))
    )
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "model": model,
        "arch": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "usable_cores": affinity,  # what this process may run on (containers, taskset)
        "isa": {f: f in flags for f in (ARM_ISA_FLAGS if arm else ISA_FLAGS)} if flags else {},
        "isa_source": "/proc/cpuinfo" if flags else "unavailable on this OS",
    }


def _memory() -> dict[str, Any]:
    import psutil

    vm = psutil.virtual_memory()
    return {"total_gb": round(vm.total / 2**30, 2), "available_gb": round(vm.available / 2**30, 2)}


def gpu_info(timeout: float = 10.0) -> dict[str, Any]:
    """NVIDIA GPUs via nvidia-smi; ``{"available": False, "reason": ...}`` when there are none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {"available": False, "reason": "nvidia-smi not found", "devices": []}
    query = "name,memory.total,driver_version,compute_cap"
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
        head = subprocess.run([smi], capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return {"available": False, "reason": f"nvidia-smi failed: {e}", "devices": []}
    devices = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            devices.append(
                {
                    "name": parts[0],
                    "memory_mb": _num(parts[1]),
                    "driver": parts[2],
                    "compute_capability": parts[3] if len(parts) > 3 else None,
                }
            )
    cuda = None
    if "CUDA Version:" in head:
        cuda = head.split("CUDA Version:")[1].split()[0].strip("|")
    return {
        "available": bool(devices),
        "devices": devices,
        "driver": devices[0]["driver"] if devices else None,
        "cuda": cuda,
        **({} if devices else {"reason": "nvidia-smi lists no GPU"}),
    }


def _num(s: str) -> float | str:
    try:
        return float(s)
    except ValueError:
        return s


def _version(*packages: str) -> str | None:
    for p in packages:
        try:
            return metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return None


def backends_info(probe: bool = True) -> dict[str, dict[str, Any]]:
    """Every known backend: installed?, version, and providers/devices where the framework says.

    ``probe=False`` reads package metadata only (no framework import: fast, for reports).
    """
    from .runtime.registry import distributions, is_installed, list_backends

    out: dict[str, dict[str, Any]] = {}
    for name in list_backends():
        if name == "null":
            continue
        version = _version(*distributions(name))
        info: dict[str, Any] = {"installed": is_installed(name) if probe else version is not None, "version": version}
        if probe and info["installed"]:
            info.update(_framework_details(name))
        out[name] = info
    return out


def _framework_details(name: str) -> dict[str, Any]:
    try:
        if name == "onnxruntime":
            import onnxruntime as ort

            return {"providers": ort.get_available_providers()}
        if name == "openvino":
            import openvino as ov

            return {"devices": ov.Core().available_devices}
        if name == "torch":
            import torch

            return {"cuda": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    except Exception as e:  # a probe must never break `bushu env`
        return {"probe_error": f"{type(e).__name__}: {e}"}
    return {}


def _os() -> dict[str, Any]:
    info: dict[str, Any] = {"system": platform.system(), "release": platform.release(), "platform": platform.platform()}
    try:
        info["name"] = platform.freedesktop_os_release().get("PRETTY_NAME")
    except (OSError, AttributeError):
        pass
    libc = platform.libc_ver()
    if libc[0]:
        info["libc"] = "-".join(libc)
    return info


def environment(probe_backends: bool = True) -> dict[str, Any]:
    """The full environment, as `bushu env --json` prints it."""
    import sys

    return {
        "cpu": cpu_info(),
        "memory": _memory(),
        "os": _os(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "gpu": _gpu_cached(),
        "backends": backends_info(probe=probe_backends),
        "versions": _library_versions(),
    }


@cache
def _gpu_cached() -> dict[str, Any]:
    return gpu_info()


def _library_versions() -> dict[str, str]:
    from .model.artifact import library_versions

    return library_versions()


def summary(env: dict[str, Any] | None = None) -> dict[str, Any]:
    """The short environment every report records (bench, eval): one flat-ish dict."""
    env = env or environment(probe_backends=False)
    cpu, gpu = env["cpu"], env["gpu"]
    return {
        "cpu": cpu["model"],
        "physical_cores": cpu["physical_cores"],
        "logical_cores": cpu["logical_cores"],
        "memory_gb": env["memory"]["total_gb"],
        "isa": [f for f, on in cpu["isa"].items() if on],
        "gpu": [d["name"] for d in gpu.get("devices", [])],
        "cuda": gpu.get("cuda"),
        "os": env["os"].get("name") or env["os"]["platform"],
        "python": env["python"]["version"],
        "versions": env["versions"],
    }
