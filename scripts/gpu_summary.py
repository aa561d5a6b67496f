"""Summarize a scripts/gpu-check.sh run: OUT/gpu-tests.xml (JUnit), OUT/gpu-bench.json, OUT/env.json
-> OUT/summary.json and OUT/summary.md (also printed). Standard library only: it runs before anything
else is known to work on the GPU machine.

    python scripts/gpu_summary.py OUT
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _tests(xml: Path) -> tuple[dict[str, int], list[dict[str, str]], list[dict[str, str]]]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failures: list[dict[str, str]] = []
    skips: list[dict[str, str]] = []
    if not xml.is_file():
        return counts, failures, skips
    for case in ET.parse(xml).getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if bad is not None:
            counts["failed"] += 1
            failures.append({"test": case.get("name", "?"), "message": (bad.get("message") or "")[:300]})
        elif skipped is not None:
            counts["skipped"] += 1
            skips.append({"test": case.get("name", "?"), "reason": (skipped.get("message") or "")[:300]})
        else:
            counts["passed"] += 1
    return counts, failures, skips


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(out: Path) -> dict:
    counts, failures, skips = _tests(out / "gpu-tests.xml")
    env, bench = _json(out / "env.json"), _json(out / "gpu-bench.json")
    devices = (env.get("gpu") or {}).get("devices") or []
    summary = {"device": devices[0].get("name") if devices else None, "tests": counts, "failures": failures,
               "skips": skips, "bench": bench.get("rows", []), "efficiency": bench.get("efficiency")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# bushu gpu-check on {summary['device'] or 'no GPU found'}", "",
             f"tests: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped", ""]
    lines += [f"- FAILED {f['test']}: {f['message']}" for f in failures]
    lines += [f"- skipped {s['test']}: {s['reason']}" for s in skips]
    rows = summary["bench"]
    if rows:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    if summary["efficiency"] is not None:
        lines += ["", f"served / raw throughput on the GPU: {summary['efficiency']}"]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print(text)
    return summary


if __name__ == "__main__":
    main(Path(sys.argv[1]))
