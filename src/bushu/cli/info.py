"""`bushu info ART`: IO, parameters, FLOPs, size, processing, provenance and recorded metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._inputs import input_options
from ._output import console, fmt, print_json, table


def _si(n: float | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g} {p}{unit}"
    return f"{n:g} {unit}".strip()


@click.command("info")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--no-flops", is_flag=True, help="Skip counting FLOPs (faster on very large graphs).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@input_options
def command(model: Path, no_flops: bool, as_json: bool, inputs) -> None:
    """IO spec, parameters, FLOPs, file size, pre/post-processing, provenance and recorded metrics
    of an artifact directory (or a plain .onnx file)."""
    from ..bench.info import model_info

    info = model_info(model, flops=not no_flops, inputs=inputs)
    if as_json:
        print_json(info)
        return
    _show(info)


def _ranges(spec: dict[str, Any]) -> str:
    """``seq 1..128..512``: min..typical..max of each symbolic dim (what bushu feeds when given no --input)."""
    parts = []
    for sym, r in (spec.get("ranges") or {}).items():
        vals = [r.get("min"), r.get("typical"), r.get("max")]
        parts.append(f"{sym} " + "..".join("?" if v is None else str(v) for v in vals))
    return "; ".join(parts)


def _show(info: dict[str, Any]) -> None:
    console.print(f"[bold]{info['name']}[/]  {info['path']}  ({info['format']}, {info.get('model_file')})")
    io = [{"": "input", **s} for s in info.get("inputs", [])] + [{"": "output", **s} for s in info.get("outputs", [])]
    table(
        [
            {
                **r,
                "shape": " × ".join(map(str, r["shape"])) or "scalar",
                "role": r.get("role") or "",
                "sizes": _ranges(r),
            }
            for r in io
        ],
        ["", "name", "dtype", "shape", "role", "sizes"],
    )
    console.print(
        f"[bold]size[/]        {info['size_bytes'] / 1e6:.2f} MB"
        + "".join(
            f"; {role}: {f['file']} {(f['size_bytes'] or 0) / 1e6:.2f} MB"
            for role, f in (info.get("files") or {}).items()
        )
    )
    if "params" in info:
        console.print(
            f"[bold]parameters[/]  {_si(info['params'])} ({info['params']:,}; {info['param_bytes'] / 1e6:.2f} MB)"
        )
        nc = ", ".join(f"{k} ×{v}" for k, v in info["flops_not_counted"].items()) or "none"
        at = f" at {info['flops_inputs']}" if info.get("flops_inputs") else ""
        console.print(
            f"[bold]FLOPs[/]       {_si(info['flops'])} per item ({_si(info['macs'])} MACs, batch "
            f"{info['flops_batch']}{at}); not counted: {nc}"
        )
        if info.get("flops_note"):
            console.print(f"[yellow]{info['flops_note']}[/]")
        top = [
            {
                "op": op,
                "nodes": v["nodes"],
                "FLOPs": _si(v["flops"]),
                "share": f"{100 * v['flops'] / max(info['flops'], 1):.1f}%",
            }
            for op, v in list(info["flops_by_op"].items())[:8]
        ]
        if top:
            table(top, ["op", "nodes", "FLOPs", "share"])
    if info.get("opset"):
        console.print(f"[bold]opset[/]       {info['opset']} ({info.get('producer') or 'unknown producer'})")
    if info.get("preprocess"):
        pp = info["preprocess"]
        console.print(
            f"[bold]preprocess[/]  {pp.get('kind')}: {pp.get('color')} resize {pp.get('resize')} → crop "
            f"{pp.get('crop')} ({pp.get('interpolation')}), ×{fmt(pp.get('scale'))}, mean {pp.get('mean')}, "
            f"std {pp.get('std')}, {pp.get('layout')}"
        )
    if info.get("postprocess"):
        post, labels = info["postprocess"], info.get("labels")
        console.print(
            f"[bold]postprocess[/] {post.get('kind')}, top-{post.get('top_k')}, softmax {post.get('softmax')}"
            + (f"; {labels['count']} labels ({', '.join(labels['first'])}, ...)" if labels else "")
        )
    prov = info.get("provenance") or {}
    if prov:
        console.print(f"[bold]provenance[/]  source: {prov.get('source', '-')}; created {prov.get('created', '-')}")
        for step in prov.get("steps", []):
            details = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("command", "time", "versions"))
            console.print(f"  - {step.get('time', '')} {step.get('command')}" + (f" ({details})" if details else ""))
    _show_metrics(info.get("metrics") or {})


def _show_metrics(metrics: dict[str, Any]) -> None:
    if not metrics:
        return
    console.print("[bold]metrics[/]")
    parity = metrics.get("parity")
    if isinstance(parity, dict):
        outs = parity.get("outputs", [])
        console.print(
            "  parity: "
            + (
                ", ".join(f"{o.get('name')} max abs {fmt(o.get('max_abs'))}" for o in outs)
                or str({k: v for k, v in parity.items() if not isinstance(v, (dict, list))})
            )
        )
    bench = metrics.get("bench")
    if isinstance(bench, dict) and bench.get("rows"):
        console.print(f"  bench ({bench.get('time', '')}, {(bench.get('env') or {}).get('cpu', '')}):")
        table(
            [r for r in bench["rows"] if r.get("status") == "ok"],
            ["backend", "batch", "threads", "precision", "p50_ms", "p99_ms", "throughput", "peak_rss_mb"],
        )
    ev = metrics.get("eval")
    if isinstance(ev, dict) and "map50" in ev:  # a detector's
        console.print(
            f"  eval on {ev.get('data')}: mAP@0.5 {fmt(ev.get('map50'))}, mAP@0.5:0.95 {fmt(ev.get('map'))}, "
            f"{ev.get('n_images')} images"
        )
    elif isinstance(ev, dict):
        console.print(
            f"  eval on {ev.get('data')}: accuracy {fmt(ev.get('accuracy'))}, top-5 {fmt(ev.get('top5'))}, "
            f"{ev.get('n_images')} images"
        )
    for key, val in metrics.items():
        if key not in ("parity", "bench", "eval"):
            console.print(f"  {key}: {val if not isinstance(val, (dict, list)) else '(see --json)'}")
