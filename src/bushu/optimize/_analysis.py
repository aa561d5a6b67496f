"""What kind of model is this, and what does this CPU do fast? Facts that pick quantization defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuInt8", "ModelProfile", "cpu_int8", "profile_model"]

CONV_OPS = ("Conv", "ConvTranspose")
MATMUL_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class ModelProfile:
    macs: dict[str, int]  # op type -> multiply-accumulates at batch 1
    params: int
    quantizable_nodes: tuple[str, ...]  # Conv/MatMul/Gemm node names, in graph order

    @property
    def total(self) -> int:
        return max(1, sum(self.macs.values()))

    def share(self, ops: tuple[str, ...]) -> float:
        return sum(self.macs.get(o, 0) for o in ops) / self.total

    @property
    def kind(self) -> str:
        """'conv' or 'matmul': where most of the arithmetic is."""
        return "conv" if self.share(CONV_OPS) >= self.share(MATMUL_OPS) else "matmul"


def profile_model(path: str | Path) -> ModelProfile:
    """MACs per op type at batch 1 (from bushu.bench.flops) and the nodes int8 would quantize."""
    import onnx

    from ..bench.flops import count_flops

    proto = onnx.load(str(path), load_external_data=False)
    report = count_flops(proto, batch=1)  # dynamic dims at their typical sizes
    macs = {op: int(v.get("macs", 0)) for op, v in report.by_op.items()}
    nodes = tuple(n.name for n in proto.graph.node if n.op_type in CONV_OPS + MATMUL_OPS)
    return ModelProfile(macs, int(report.params), nodes)


@dataclass(frozen=True)
class CpuInt8:
    """Which static int8 recipe ONNX Runtime runs fastest here (from its quantize_static guidance)."""

    activation_type: str
    weight_type: str
    reduce_range: bool
    reason: str
    vnni: bool


def cpu_int8(flags: set[str] | None = None, arch: str | None = None) -> CpuInt8:
    if flags is None or arch is None:
        from ..envinfo import cpu_info

        info = cpu_info()
        flags = {f for f, on in info.get("isa", {}).items() if on} if flags is None else flags
        arch = info.get("arch", "") if arch is None else arch
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if (arch or "").lower() in ("aarch64", "arm64") or flags & {"neon", "asimd"}:
        return CpuInt8(
            "int8",
            "int8",
            False,
            "ARM CPU: ONNX Runtime's ARM kernels prefer symmetric int8 activations and weights (S8S8)",
            vnni,
        )
    if vnni:
        have = ", ".join(sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}))
        return CpuInt8(
            "uint8",
            "int8",
            False,
            f"x86 CPU with {have}: uint8 activations × int8 weights (U8S8) "
            "use the VNNI dot-product kernels; signed activations (S8S8) are barely faster than fp32",
            vnni,
        )
    return CpuInt8(
        "uint8",
        "int8",
        True,
        "x86 CPU without VNNI: U8S8 with 7-bit weights (reduce_range) to avoid int16 saturation in the AVX2 kernels",
        vnni,
    )
