"""Run claims across hosts sharing a results folder: a fresh claim from another host is respected even
though its PID means nothing here; only an old heartbeat makes it stale; on the claim's own host a dead
PID does; exactly one of two racing claimants wins; a released claim leaves nothing behind."""
from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from benchmarks.store import claims
from benchmarks.store.claims import CLAIM_FILE, Claim, ClaimError
from benchmarks.store.rundir import ResultsError, RunDirectory


def _write_claim(folder, host, pid, age):
    (folder / CLAIM_FILE).write_text(json.dumps({"host": host, "pid": pid, "heartbeat": time.time() - age}))


def test_another_hosts_fresh_claim_is_respected_even_with_a_pid_dead_here(tmp_path, monkeypatch):
    monkeypatch.setenv("HETBENCH_HOST", "b")
    _write_claim(tmp_path, "a", 2 ** 22 + 12345, age=5)  # no such pid here, yet host a may be running it
    with pytest.raises(ClaimError, match="pid .* on host a"):
        Claim(tmp_path).acquire()


def test_another_hosts_claim_goes_stale_only_by_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setenv("HETBENCH_HOST", "b")
    _write_claim(tmp_path, "a", os.getpid(), age=claims.STALE_SECONDS + 1)  # even a pid alive here
    claim = Claim(tmp_path)
    claim.acquire()
    assert json.loads((tmp_path / CLAIM_FILE).read_text())["host"] == "b"
    claim.release()
    assert not list(tmp_path.iterdir())


def test_on_the_claims_own_host_a_dead_pid_is_stale_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HETBENCH_HOST", "a")
    _write_claim(tmp_path, "a", 2 ** 22 + 12345, age=1)
    claim = Claim(tmp_path)
    claim.acquire()
    assert json.loads((tmp_path / CLAIM_FILE).read_text())["pid"] == os.getpid()
    claim.release()


def test_the_heartbeat_keeps_a_claim_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_SECONDS", 0.05)
    claim = Claim(tmp_path)
    claim.acquire()
    first = json.loads((tmp_path / CLAIM_FILE).read_text())["heartbeat"]
    time.sleep(0.3)
    assert json.loads((tmp_path / CLAIM_FILE).read_text())["heartbeat"] > first
    claim.release()


def _race(folder, host, queue):
    os.environ["HETBENCH_HOST"] = host
    try:
        Claim(folder).acquire()
        queue.put(host)
        time.sleep(1.0)  # hold it while the other tries
    except ClaimError:
        queue.put(None)


def test_two_hosts_racing_for_one_stale_claim_give_one_winner(tmp_path):
    _write_claim(tmp_path, "gone", 1, age=claims.STALE_SECONDS + 5)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_race, args=(tmp_path, host, queue)) for host in ("a", "b")]
    for w in workers:
        w.start()
    results = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join()
    assert sorted(r for r in results if r) in (["a"], ["b"]) and results.count(None) == 1


def test_a_run_folder_claimed_by_another_host_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HETBENCH_HOST", "b")
    out = RunDirectory(tmp_path, "s", "run1")
    out.tmp.mkdir(parents=True)
    _write_claim(out.tmp, "a", 4242, age=1)
    with pytest.raises(ResultsError, match="being written by pid 4242 on host a") as info:
        out.open({"x": 1})
    assert "\n" not in str(info.value)
