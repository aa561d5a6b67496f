"""`bushu.envinfo`: /proc/cpuinfo parsing, nvidia-smi present or absent, the report summary."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from bushu import envinfo

X86 = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse4_2 fma avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16

processor	: 1
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse4_2 fma avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16
"""
ZEN2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 fma avx2\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes asimddp sve i8mm bf16\nCPU part\t: 0xd40\n"


def test_parses_x86_isa_flags():
    cpu = envinfo.cpu_info(X86)
    assert cpu["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu["isa"]["avx512_vnni"] and cpu["isa"]["amx_int8"] and cpu["isa"]["avx512_bf16"]
    assert cpu["isa"]["avx512_fp16"] is False
    old = envinfo.cpu_info(ZEN2)["isa"]
    assert old["avx2"] and not old["avx512f"] and not old["amx_tile"]


def test_arm_features_and_no_cpuinfo(monkeypatch):
    monkeypatch.setattr(envinfo.platform, "machine", lambda: "aarch64")
    arm = envinfo.cpu_info(ARM)
    assert arm["isa"]["asimd"] and arm["isa"]["sve"] and not arm["isa"]["sve2"]
    assert "avx2" not in arm["isa"]
    bare = envinfo.cpu_info("")  # another OS: no /proc/cpuinfo
    assert bare["isa"] == {} and "unavailable" in bare["isa_source"]
    assert bare["logical_cores"] >= 1


def test_real_machine_cpu():
    cpu = envinfo.cpu_info()
    assert cpu["logical_cores"] >= 1 and cpu["model"]
    if sys.platform.startswith("linux") and os.path.exists("/proc/cpuinfo"):
        assert cpu["isa_source"] == "/proc/cpuinfo"


def test_no_nvidia_smi_is_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    gpu = envinfo.gpu_info()
    assert gpu["available"] is False and gpu["devices"] == [] and "not found" in gpu["reason"]


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for nvidia-smi")
def test_nvidia_smi_output_is_parsed(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        "case \"$1\" in --query-gpu=*) echo 'NVIDIA H100 80GB HBM3, 81559, 550.54.15, 9.0';;\n"
        "*) echo '| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |';; esac\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path))
    gpu = envinfo.gpu_info()
    assert gpu["available"] is True
    assert gpu["devices"] == [
        {"name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559.0, "driver": "550.54.15", "compute_capability": "9.0"}
    ]
    assert gpu["cuda"] == "12.4" and gpu["driver"] == "550.54.15"


def test_environment_and_summary_keys():
    env = envinfo.environment(probe_backends=False)
    assert set(env) >= {"cpu", "memory", "os", "python", "gpu", "backends", "versions"}
    assert env["memory"]["total_gb"] > 0
    assert env["backends"]["onnxruntime"]["installed"] is True
    assert "null" not in env["backends"]
    s = envinfo.summary(env)
    assert set(s) >= {"cpu", "physical_cores", "logical_cores", "memory_gb", "isa", "gpu", "os", "python", "versions"}
    assert isinstance(s["isa"], list)


def test_probe_lists_onnxruntime_providers():
    env = envinfo.environment(probe_backends=True)
    assert "CPUExecutionProvider" in env["backends"]["onnxruntime"]["providers"]
