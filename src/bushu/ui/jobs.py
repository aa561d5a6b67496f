"""Background jobs for the web UI: `bushu` commands run as subprocesses, their state in SQLite.

A job row is written before its process starts; the process runs in its own session under
``bushu.ui.runner``, which writes the exit status to ``jobs/<id>.rc``; its output goes to
``jobs/<id>.log``. The UI may stop and start again at any time: on start it re-attaches to jobs whose
process is still alive, finishes those whose .rc file appeared, and marks the rest ``interrupted``
(a train job can be resumed: ``bushu train`` continues its search from its work directory).

    queued -> running -> succeeded | failed | cancelled | interrupted
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, UserInputError
from ._http import plain

__all__ = ["JobStore"]

FINAL = ("succeeded", "failed", "cancelled", "interrupted")
CAPTURE_STDOUT = ("eval",)  # kinds whose stdout (their --json result) is the job's output file
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  title TEXT NOT NULL,
  argv TEXT NOT NULL,
  output TEXT,
  status TEXT NOT NULL,
  pid INTEGER,
  returncode INTEGER,
  created REAL NOT NULL,
  started REAL,
  finished REAL
);
"""


def _alive(pid: int | None, job_id: int) -> bool:
    """Is pid still our runner for this job (not a recycled pid)?"""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    return b"bushu.ui.runner" in cmdline and any(a.endswith(f"{job_id}.rc".encode()) for a in cmdline)


class JobStore:
    def __init__(self, workspace: Path, max_running: int = 1):
        self.dir = Path(workspace) / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_running = max_running
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(Path(workspace) / "bushu-ui.sqlite"), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconcile()

    # -- queries ----------------------------------------------------------------------------------------
    def get(self, job_id: int, log_lines: int = 40) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id}")
        return self._public(row, log_lines)

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [self._public(r, 3) for r in rows]

    def _public(self, row: sqlite3.Row, log_lines: int) -> dict[str, Any]:
        d = dict(row)
        d["argv"] = json.loads(d["argv"])
        end = d["finished"] or time.time()
        d["elapsed_s"] = round(end - d["started"], 1) if d["started"] else 0.0
        d["log_tail"] = self.log_tail(d["id"], log_lines)
        self._outcome(d)
        d["progress"] = self._progress(d)
        d["links"] = self._links(d)
        return d

    def _progress(self, d: dict[str, Any]) -> dict[str, Any]:
        """Phase, step of total, percent, ETA and best score so far, from the file the job's progress
        bars write (bushu.train.runner); a train job's percent and ETA follow its time budget."""
        try:
            state = json.loads((self.dir / f"{d['id']}.progress.json").read_text())
        except (OSError, ValueError):
            state = {}
        total, step = state.get("total"), state.get("step", 0)
        out = {k: state.get(k) for k in ("phase", "step", "total", "best")} | {
            "scores": state.get("scores", []),  # the search: one validation score per finished trial
            "epochs": state.get("epochs", []),  # fine-tuning: loss and accuracy per epoch
        }
        if d["status"] in ("succeeded", "skipped"):
            return out | {"percent": 100.0, "eta_s": 0.0}
        if d["status"] != "running":
            return out | {"percent": 0.0 if d["status"] == "queued" else None, "eta_s": None}
        percent = eta = None
        if total:
            percent = min(99.0, 100.0 * step / total)
            spent = state["updated"] - state["phase_started"]
            eta = spent / step * (total - step) - (time.time() - state["updated"]) if step else None
        budget = self._budget(d["argv"]) if d["kind"] == "train" else None
        if budget:  # several phases, some of unknown length: the budget is the honest clock
            percent = min(99.0, 100.0 * d["elapsed_s"] / budget)
            eta = budget - d["elapsed_s"]
        return out | {
            "percent": None if percent is None else round(percent, 1),
            "eta_s": None if eta is None else round(max(0.0, eta), 1),
        }

    @staticmethod
    def _budget(argv: builtins.list[str]) -> float | None:
        from ..train import parse_budget

        try:
            return parse_budget(argv[argv.index("--budget") + 1]) if "--budget" in argv else None
        except (UserInputError, IndexError):
            return None

    def _links(self, d: dict[str, Any]) -> dict[str, str]:
        """Where a finished job's result is: the model (and its training report), or the evaluation."""
        out = Path(d["output"]) if d["output"] else None
        if d["status"] != "succeeded" or out is None:
            return {}
        if d["kind"] in ("train", "import", "optimize") and (out / "bushu.yaml").is_file():
            links = {"model": out.name}
            if (out / "report.html").is_file():
                links["report"] = f"/api/models/{out.name}/report"
            return links
        if d["kind"] == "eval":
            return {"eval": out.stem}
        return {}

    def _outcome(self, d: dict[str, Any]) -> None:
        """The status as a user should read it: an export that skipped its format is ``skipped`` (with the
        reason), not ``succeeded``; a failed job says why in plain words, not as the log's last line."""
        if d["status"] == "succeeded" and d["kind"] == "export" and d["output"]:
            try:
                rows = json.loads((Path(d["output"]) / "export.json").read_text()).get("rows", [])
            except (OSError, ValueError):
                rows = []
            bad = [r for r in rows if r.get("status") in ("skipped", "error")]
            if bad:
                d["status"] = "failed" if any(r["status"] == "error" for r in bad) else "skipped"
                d["reason"] = plain("; ".join(f"{r.get('format')}: {r.get('reason')}" for r in bad))
        elif d["status"] == "failed":
            lines = self.log_tail(d["id"], 200)
            errors = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
            if errors:
                i = errors[-1]
                hint = (
                    lines[i + 1].removeprefix("Hint: ")
                    if i + 1 < len(lines) and lines[i + 1].startswith("Hint: ")
                    else None
                )
                d["reason"] = plain(lines[i].removeprefix("error: ") + (f" — {hint}" if hint else ""))

    def log_tail(self, job_id: int, lines: int) -> builtins.list[str]:
        log = self.dir / f"{job_id}.log"
        if not log.is_file():
            return []
        with open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - 16384))
            text = f.read().decode("utf-8", "replace")
        # progress bars redraw with \r: keep the last state of each line
        return [ln.split("\r")[-1] for ln in text.splitlines() if ln.strip()][-lines:]

    # -- changes ----------------------------------------------------------------------------------------
    def submit(self, kind: str, title: str, argv: builtins.list[str], output: str | None = None) -> dict[str, Any]:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO jobs (kind, title, argv, output, status, created) VALUES (?, ?, ?, ?, 'queued', ?)",
                (kind, title, json.dumps(argv), output, time.time()),
            )
            job_id = cur.lastrowid
        assert job_id is not None  # an INSERT sets it
        self.reconcile()
        return self.get(job_id)

    def cancel(self, job_id: int) -> dict[str, Any]:
        job = self.get(job_id)
        if job["status"] in FINAL:
            raise UserInputError(f"job {job_id} has already ended ({job['status']})")
        if job["status"] == "running" and _alive(job["pid"], job_id):
            try:
                os.killpg(job["pid"], signal.SIGTERM)  # the runner leads its own session and process group
            except OSError:
                pass
        self._finish(job_id, "cancelled", None)
        return self.get(job_id)

    def delete(self, job_id: int) -> dict[str, Any]:
        """Forget an ended job: its row, log, exit status and progress (what it made, a model say, stays)."""
        from ._http import HttpError

        job = self.get(job_id)
        if job["status"] not in FINAL:
            raise HttpError(409, f"job {job_id} is still {job['status']}", hint="cancel it first")
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        for suffix in (".log", ".rc", ".rc.tmp", ".progress.json", ".progress.json.tmp"):
            (self.dir / f"{job_id}{suffix}").unlink(missing_ok=True)
        return {"deleted": job_id}

    def using(self, path: Path) -> builtins.list[dict[str, Any]]:
        """The queued or running jobs that read or write ``path`` (or anything inside it)."""
        p = str(Path(path).resolve())
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        out = []
        for row in rows:
            args = [str(Path(a).resolve()) for a in [*json.loads(row["argv"]), row["output"]] if a and os.path.isabs(a)]
            if any(a == p or a.startswith(p + os.sep) for a in args):
                out.append({"id": row["id"], "title": row["title"], "status": row["status"]})
        return out

    def retry(self, job_id: int) -> dict[str, Any]:
        job = self.get(job_id)
        if job["status"] not in FINAL:
            raise UserInputError(f"job {job_id} is still {job['status']}")
        return self.submit(job["kind"], job["title"] + " (again)", job["argv"], job["output"])

    def _finish(self, job_id: int, status: str, rc: int | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, returncode = ?, finished = ? WHERE id = ? "
                "AND status IN ('queued', 'running')",
                (status, rc, time.time(), job_id),
            )

    def _start(self, row: sqlite3.Row) -> None:
        job_id = row["id"]
        rc_file = self.dir / f"{job_id}.rc"
        rc_file.unlink(missing_ok=True)
        (self.dir / f"{job_id}.progress.json").unlink(missing_ok=True)
        argv = json.loads(row["argv"])
        log = open(self.dir / f"{job_id}.log", "ab")  # noqa: SIM115 - closed in the finally below, after Popen
        try:
            import subprocess

            capture = ["--stdout", row["output"]] if row["kind"] in CAPTURE_STDOUT and row["output"] else []
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bushu.ui.runner",
                    str(rc_file),
                    *capture,
                    "--",
                    sys.executable,
                    "-m",
                    "bushu",
                    *argv,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "COLUMNS": "120",
                    "BUSHU_PROGRESS_FILE": str(self.dir / f"{job_id}.progress.json"),
                },
            )
        finally:
            log.close()
        self._children = getattr(self, "_children", {})
        self._children[job_id] = proc  # reaped in reconcile
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = 'running', pid = ?, started = ? WHERE id = ?", (proc.pid, time.time(), job_id)
            )

    def reconcile(self) -> None:
        """Finish ended jobs, mark lost ones interrupted, start queued ones up to max_running."""
        with self._lock:
            for job_id, proc in list(getattr(self, "_children", {}).items()):
                if proc.poll() is not None:
                    del self._children[job_id]
            running = self._db.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall()
            n_running = 0
            for row in running:
                rc_file = self.dir / f"{row['id']}.rc"
                if rc_file.is_file():
                    try:
                        rc = int(rc_file.read_text().strip())
                    except ValueError:
                        rc = -1
                    self._finish(row["id"], "succeeded" if rc == 0 else "failed", rc)
                elif _alive(row["pid"], row["id"]):
                    n_running += 1
                else:
                    self._finish(row["id"], "interrupted", None)
            queued = self._db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id").fetchall()
            for row in queued[: max(0, self.max_running - n_running)]:
                self._start(row)

    # -- the background loop ----------------------------------------------------------------------------
    def start(self, interval_s: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reconcile()
                except sqlite3.Error:
                    pass

        self._thread = threading.Thread(target=loop, name="bushu-ui-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching; running jobs go on (a restarted UI picks them up again)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            self._db.close()
