"""OUT/report.html: the plan for people: targets, choice and why, verification, Pareto front, every
candidate with the bounds it failed, and two plots (latency vs throughput, accuracy vs size)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_report", "CANDIDATE_COLUMNS"]

CANDIDATE_COLUMNS = ("config", "p50_ms", "p99_ms", "avg_ms", "throughput", "size_mb", "accuracy", "failed")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, list) and v and isinstance(v[0], Mapping) and "flag" in v[0]:
        return "; ".join(f"{f['flag']} {f['limit']:g} ({f['value']:g} {f['unit']})" for f in v)
    if isinstance(v, list) and not v:
        return "none"
    return str(v)


def failed_text(fails: Sequence[Mapping[str, Any]]) -> str:
    return _fmt(list(fails)) if fails else "none"


def compression_text(v: Mapping[str, Any]) -> str | None:
    """prune0.3: 58% of the parameters, fine-tuned 3 epoch(s)."""
    if not v.get("compression"):
        return None
    d = v.get("compression_details") or {}
    parts = [f"{d['params_ratio']:.0%} of the parameters"] if d.get("params_ratio") else []
    if d:
        parts.append(f"fine-tuned {d['finetune_epochs']} epoch(s)" if d.get("finetune_epochs") else "not fine-tuned")
    return v["compression"] + (": " + ", ".join(parts) if parts else "")


def _table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str], highlight: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = ' class="chosen"' if highlight and r.get("config") == highlight else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(result: Mapping[str, Any]) -> dict[str, str]:
    """base64 PNGs: 'latency' (p99 vs throughput, served and in-process) and 'accuracy' (vs size)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    out = {}
    c = result["constraints"]
    cands = [s for s in result["candidates"] if s.get("status") == "ok"]
    chosen = (result.get("chosen") or {}).get("config")
    variants = sorted({s["variant"] for s in cands} | {r["variant"] for r in result.get("in_process", [])})
    colors = {v: f"C{i}" for i, v in enumerate(variants)}
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for r in result.get("in_process", []):
        if r.get("status") == "ok":
            ax.scatter(r["throughput"], r["p99_ms"], s=14, marker="x", color=colors[r["variant"]], alpha=0.35)
    for v in variants:
        pts = [s for s in cands if s["variant"] == v]
        if pts:
            ax.scatter(
                [s["throughput"] for s in pts],
                [s["p99_ms"] for s in pts],
                s=42,
                color=colors[v],
                label=f"{v} served",
                edgecolor="black",
                linewidth=0.5,
            )
    front = sorted((s for s in cands if s.get("pareto")), key=lambda s: s["throughput"])
    if front:
        ax.plot(
            [s["throughput"] for s in front],
            [s["p99_ms"] for s in front],
            "k--",
            lw=1,
            label="Pareto front (throughput, p99, size, accuracy)",
        )
    for s in cands:
        if s["config"] == chosen:
            ax.scatter(
                [s["throughput"]],
                [s["p99_ms"]],
                s=260,
                marker="*",
                color="gold",
                edgecolor="black",
                zorder=5,
                label="chosen",
            )
    if c.get("max_p99_ms"):
        ax.axhline(c["max_p99_ms"], color="red", lw=1, ls=":", label=f"max p99 {c['max_p99_ms']:g} ms")
    if c.get("min_throughput"):
        ax.axvline(c["min_throughput"], color="purple", lw=1, ls=":", label=f"min throughput {c['min_throughput']:g}")
    ax.set_xlabel("throughput (requests/s; in-process rows: items/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"latency vs throughput at concurrency {c['concurrency']} (x: in-process batch rows)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    out["latency"] = _png(fig)
    plt.close(fig)

    vs = [v for v in result["variants"] if v.get("accuracy") is not None]
    if vs:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        spots: dict[tuple, list[str]] = {}
        for v in vs:
            ax.scatter(v["size_mb"], v["accuracy"], s=60, color=colors.get(v["variant"], "gray"), edgecolor="black")
            spots.setdefault((v["size_mb"], v["accuracy"]), []).append(v["variant"])
        for (x, y), names in spots.items():  # variants on the same spot share one label
            ax.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=(6, -4), fontsize=8, va="top")
        if c.get("max_size_mb"):
            ax.axvline(c["max_size_mb"], color="red", lw=1, ls=":", label=f"max size {c['max_size_mb']:g} MB")
        if c.get("min_accuracy"):
            ax.axhline(c["min_accuracy"], color="purple", lw=1, ls=":", label=f"min {c['min_accuracy']:g}%")
        ax.set_xlabel("model size (MB)")
        ax.set_ylabel(f"{result['accuracy_metric']} (%)")
        ax.set_title("accuracy vs size per variant")
        ax.grid(alpha=0.3)
        if c.get("max_size_mb") or c.get("min_accuracy"):
            ax.legend(fontsize=8)
        out["accuracy"] = _png(fig)
        plt.close(fig)
    return out


LEADER_COLUMNS = (
    "config",
    "windows",
    "requests",
    "p50_ms",
    "p99_ms",
    "worst_window_p99_ms",
    "p99_ucb_ms",
    "p99_bound_ms",
    "throughput",
    "margin",
    "bound_failed",
    "search_p99_ms",
)


def _confidence_html(result: Mapping[str, Any]) -> str:
    """How sure the choice is (plan.json's "confidence") and the leaders it was chosen from."""
    conf = result.get("confidence")
    if not conf:
        return "<p>not confirmed: the choice rests on one served window per configuration</p>"
    cls = {"high": "ok", "low": "bad"}.get(conf["level"], "")
    conf_tab = result.get("confirmation") or {}
    rows = [{**s, "bound_failed": s.get("bound_failed") or []} for s in conf_tab.get("leaders", [])]
    return (
        f"<h3 class='{cls}'>How sure: {html.escape(conf['level'])}</h3><p>{html.escape(conf['text'])}</p>"
        f"<p>{html.escape(conf['statistic'])}; {conf_tab.get('windows')} window(s) of {conf_tab.get('window_s')} s "
        f"per leader, {conf_tab.get('seconds')} s in all; margin = room of the bound under the target</p>"
        + _table(rows, LEADER_COLUMNS, (result.get("chosen") or {}).get("config"))
    )


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#f2f2f2}
td:first-child{text-align:left}tr.chosen{background:#fff6c8;font-weight:bold}.ok{color:#187018}.bad{color:#b00020}
code{background:#f4f4f4;padding:1px 4px}"""


def write_report(result: Mapping[str, Any], path: str | Path) -> str:
    path = Path(path)
    imgs = plots(result)
    parts = _summary_html(result) + _decision_html(result)
    if "latency" in imgs:
        parts.append(f"<h2>Latency vs throughput</h2><img src='data:image/png;base64,{imgs['latency']}'>")
    if "accuracy" in imgs:
        parts.append(f"<h2>Accuracy vs size</h2><img src='data:image/png;base64,{imgs['accuracy']}'>")
    parts += _tables_html(result)
    path.write_text("\n".join(parts))
    return str(path)


def _summary_html(result: Mapping[str, Any]) -> list[str]:
    """The title, the run, the environment, the targets and how accuracy is measured."""
    e = html.escape
    c = result["constraints"]
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>bushu plan: {e(result['model'])}</title>",
        f"<style>{_CSS}</style><h1>bushu plan: {e(result['model'])}</h1>",
        f"<p>artifact <code>{e(result['artifact'])}</code>, data <code>{e(result['data'])}</code> "
        f"({result['samples']} images), {e(result['time'])}, {result['elapsed_s']} s of a {result['budget_s']:g} s "
        "budget"
        + (
            " (" + ", ".join(f"{e(k.replace('_', '-'))} {v:g} s" for k, v in result["phases_s"].items()) + ")"
            if result.get("phases_s")
            else ""
        )
        + "</p>",
    ]
    env = result["env"]
    parts.append(
        f"<h2>Environment</h2><p>{e(str(env.get('cpu')))}; {result['cores']} usable core(s); "
        f"{env.get('memory_gb')} GB; ISA {e(', '.join(env.get('isa', [])))}; GPU "
        f"{e(', '.join(env.get('gpu') or []) or 'none')}; {e(str(env.get('os')))}</p>"
    )
    given = {k: v for k, v in c.items() if v is not None}
    parts.append("<h2>Targets</h2>" + _table([given], list(given)))
    parts.append(f"<p>accuracy: {e(result['accuracy_note'])}</p>")
    return parts


def _decision_html(result: Mapping[str, Any]) -> list[str]:
    """The chosen configuration (or why none meets the constraints) and its served verification."""
    e = html.escape
    chosen = result.get("chosen")
    parts: list[str] = []
    if chosen:
        parts.append(f"<h2 class='ok'>Chosen: {e(chosen['config'])}</h2><p>{e(result['why'])}</p>")
        parts.append(
            _table(
                [chosen],
                [
                    "config",
                    "threads",
                    "instances",
                    "max_batch_size",
                    "max_queue_delay_us",
                    "p50_ms",
                    "p99_ms",
                    "throughput",
                    "size_mb",
                    "accuracy",
                ],
            )
        )
        parts.append(_confidence_html(result))
        parts.append(
            f"<p>model repository: <code>{e(str(result.get('repository')))}</code> — run it with "
            f"<code>bushu serve {e(str(result.get('repository')))}</code></p>"
        )
    else:
        cl = result.get("closest") or {}
        parts.append(
            f"<h2 class='bad'>Nothing meets the constraints</h2><p>{e(str(cl.get('message')))}</p>"
            f"<p>{e(str(cl.get('relax') or ''))}</p><p>{e(str(cl.get('hint') or ''))}</p>"
        )
    ver = result.get("verification")
    if ver:
        cls = "ok" if ver.get("passed") else "bad"
        parts.append(
            f"<h2 class='{cls}'>Verification: {'meets' if ver.get('passed') else 'misses'} the targets</h2>"
            f"<p><code>{e(ver.get('command', ''))}</code>, {ver.get('concurrency')} client(s) for "
            f"{ver.get('seconds')} s; served top-1 equals in-process top-1 on "
            f"{_fmt(ver.get('served_top1_agreement'))} of {ver.get('checked_outputs')} checked outputs</p>"
        )
        parts.append(
            _table([ver], ["p50_ms", "p99_ms", "avg_ms", "throughput", "requests", "errors", "targets", "failed"])
        )
    return parts


def _tables_html(result: Mapping[str, Any]) -> list[str]:
    """The Pareto front, every served candidate, the variants and the search's in-process rows."""
    e = html.escape
    chosen = result.get("chosen")
    parts: list[str] = []
    hl = chosen["config"] if chosen else None
    cols: tuple[str, ...] = CANDIDATE_COLUMNS
    if any(v.get("compression") for v in result["variants"]):
        cols = cols[:1] + ("compression",) + cols[1:]
    parts.append("<h2>Pareto front (served)</h2>" + _table(result["pareto"], cols, hl))
    parts.append(
        "<h2>Every served candidate and the constraints it failed</h2>"
        + _table(result["candidates"], cols + ("status", "reason"), hl)
    )
    vcols = ["variant", "status", "reason", "size_mb", "accuracy", "accuracy_drop", "failed", "pruned"]
    variants = result["variants"]
    if any(v.get("compression") for v in variants):
        vcols.insert(1, "compression")
        variants = [{**v, "compression": compression_text(v)} for v in variants]
    parts.append("<h2>Variants</h2>" + _table(variants, vcols))
    s = result["search"]
    parts.append(
        f"<h2>Search</h2><p>{e(s['method'])}; {s['in_process_rows']} in-process rows, {s['grid_size']} "
        f"predicted configurations, {s['served']} served; load: {e(s['load'])}.</p>"
    )
    parts.append(
        "<h3>In-process rows (bushu.bench.bench)</h3>"
        + _table(
            result["in_process"],
            ["variant", "threads", "batch", "p50_ms", "p99_ms", "throughput", "peak_rss_mb", "status"],
        )
    )
    return parts
