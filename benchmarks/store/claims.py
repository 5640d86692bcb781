"""Who is writing a run: a claim file that holds across hosts sharing one results folder (issue E1).

A PID alone cannot say whether a writer lives when the folder is shared between machines: another
host's live PID looks dead here. A claim is therefore ``owner.json`` = host, pid and a heartbeat time,
created with an exclusive create (two claimants cannot both succeed) and refreshed by a background
thread while the run writes. A claim is stale when its heartbeat is older than ``STALE_SECONDS``, or,
on the claim's own host only, when its PID is gone. Taking over a stale claim first renames it away
(an atomic step only one claimant can win), then creates a fresh claim exclusively.

``HETBENCH_HOST`` overrides the host name (tests use it to play two hosts; a cluster can use it for
node identities that survive renames).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

CLAIM_FILE = "owner.json"
HEARTBEAT_SECONDS = 30.0
# Longer than any pause a live writer's heartbeat thread can have (a loaded machine, a paused VM).
STALE_SECONDS = 600.0


class ClaimError(RuntimeError):
    """The run is claimed by a live writer; the message names it."""


def host_name() -> str:
    return os.environ.get("HETBENCH_HOST") or socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: a half-written claim of a crashed writer, judged by its age below
    return data if isinstance(data, dict) else {}


def is_stale(claim: dict, path: Path, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    beat = claim.get("heartbeat")
    if not isinstance(beat, (int, float)):
        beat = path.stat().st_mtime if path.exists() else 0.0
    if now - beat > STALE_SECONDS:
        return True
    pid = claim.get("pid")
    return claim.get("host") == host_name() and isinstance(pid, int) and not _pid_alive(pid)


def live_claim(folder: Path) -> dict | None:
    """The claim on ``folder`` while a live writer holds it; None when there is none or it is stale (so a
    sweep may resume the run). Only a look: ``Claim.acquire`` still decides who writes."""
    path = Path(folder) / CLAIM_FILE
    claim = _read(path)
    if claim is None or is_stale(claim, path):
        return None
    return claim


class Claim:
    """An exclusive claim on one run folder, kept fresh by a heartbeat until ``release``."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / CLAIM_FILE
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def mine(self) -> dict:
        return {"host": host_name(), "pid": os.getpid(), "heartbeat": time.time()}

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                current = _read(self.path)
                if current is None:
                    continue  # released between our attempts: try again
                if current.get("host") == host_name() and current.get("pid") == os.getpid():
                    break  # ours already (a reopened run in the same process)
                if not is_stale(current, self.path):
                    raise ClaimError(f"results: {self.path.parent} is being written by pid {current.get('pid')} on "
                                     f"host {current.get('host')} (heartbeat {time.time() - current.get('heartbeat', 0):.0f} s "
                                     f"ago; a claim goes stale after {STALE_SECONDS:.0f} s)") from None
                try:  # only one claimant's rename of the stale claim succeeds; the others retry
                    os.rename(self.path, self.path.with_name(f".stale-{secrets.token_hex(4)}-{CLAIM_FILE}"))
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(self.mine(), fh)
            break
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="hetbench-claim", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.refresh()

    def refresh(self) -> None:
        tmp = self.path.with_name(f".{CLAIM_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.mine()))
            os.replace(tmp, self.path)
        except OSError:
            pass  # the folder was finished or removed; the next acquire judges what is there

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.path.unlink(missing_ok=True)
        for stale in self.path.parent.glob(f".stale-*-{CLAIM_FILE}"):
            stale.unlink(missing_ok=True)
