"""The GPU check (issue G): one command, prepared and rehearsed on a CPU, that measures on a GPU what this
project's CPUs cannot.

``hetbench perf --gpu-check OUT`` writes into OUT (four files, each far below 16 MiB):
  ``gpu_check.json``  the machine, the time plan and every number below;
  ``executors.csv``   (a), one row per executor;
  ``summary.md``      the same as tables, beside the paper's numbers;
  ``runs.tar.gz``     (b)'s two run folders (config, rounds.csv, timings.csv, summary or checkpointed partial).
It rewrites all four after each part, so a command killed at its time limit still leaves what it measured,
and a part that fails leaves its traceback there while the parts after it still run.

(a) The sequential and the vectorised executor on Fashion-MNIST (all 60,000 images), ConvNet-128, 80
    clients, 32 a round, one local epoch at batch 32, persistent client Adam at 1e-3: seconds per round
    over 3 rounds between a warm-up round and a last round that evaluates, client samples per second
    and peak GPU memory; then both executors' models after one round from the same start, compared by
    their validation logits in full float32 (TF32 convolutions, on by default on CUDA, round
    differently for the two executors' kernels).
(b) FedAvg and DynaFed at the paper's setting (suite ``paper``'s Fashion-MNIST alpha 0.01 seed-0 cells: 200
    rounds, 25 snapshots, 3000 matching iterations of 20 steps, 15 images per class, official
    fine-tuning), evaluated every round, on the vectorised executor, without checkpoints. One matching
    iterations timed after a warm-up and (a)'s round time plan (b) (``plan_budget``): if the paper's
    budget does not fit four fifths of the time left, the synthesis is capped at half of that (fewer
    iterations) and both runs get as many rounds as then fit, and the summary names each cut. Each run also has a
    deadline: it stops after the first round that ends past it and is reported as stopped.

``--gpu-scale tiny`` runs the same code at a tiny scale on any device: ``make test`` rehearses it on the
CPU over a tiny Fashion-MNIST the test writes, so that the one GPU run works the first time. Nothing on
this path imports a package the GPU image lacks (it has torch, numpy, pandas, matplotlib, tqdm and
Pillow; no optuna), which that test checks too.
"""
from __future__ import annotations

import csv
import gc
import json
import math
import traceback
import platform
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.core.typed import ConfigError
from benchmarks.data.datasets import DATASETS
from benchmarks.engine.checkpoint import CHECKPOINT_NAME
from benchmarks.engine.federation import build_federation
from benchmarks.engine.registry import get_algorithm
from benchmarks.engine.runner import RoundLoop, RunStopped, run
from benchmarks.engine.settings import RunConfig
from benchmarks.experiments.config import config_from_dict
from benchmarks.experiments.suites import load_suite
from benchmarks.perf.dynafed import measure as measure_synthesis
from benchmarks.perf.executors import perf_config
from benchmarks.store.claims import CLAIM_FILE
from benchmarks.store.rundir import RunDirectory, git_revision
from benchmarks.store.schema import ROUNDS_FILE, SUMMARY_FILE, TIMINGS_FILE, read_long_csv

OUTPUT_FILES = ("gpu_check.json", "executors.csv", "summary.md", "runs.tar.gz")
EXECUTORS = ("sequential", "vectorised")
ONE_OFF_PARTS = ("synthesis", "quality")  # DynaFed's server work done once, at the end of its trajectory
PAPER_CELL = {"dataset": "fmnist", "alpha": 0.01, "seed": 0}
PAPER_ALGORITHMS = ("fedavg", "dynafed")
REFERENCE_TABLE = Path(__file__).resolve().parents[2] / "reports" / "reference" / "dynafed_table.csv"
# Largest difference of the two executors' validation logits after one round, in float32, relative to the
# largest logit, that still counts as equal.
EQUAL_TOLERANCE = 1e-3


class GpuCheckError(ConfigError):
    """The check cannot run as asked; the message names the option (the CLI prints it as one line)."""


@dataclass(frozen=True)
class CheckScale:
    clients: int            # (a): clients of the federation (40% train each round)
    width: int              # (a): ConvNet width
    timed_rounds: int       # (a): rounds timed after the warm-up round
    paper_overrides: tuple[str, ...] = ()  # (b): --set overrides laid over suite paper's cells
    tiny_dynafed: bool = False  # (b): DynaFed at its conformance-test budget


SCALES = {
    "full": CheckScale(clients=80, width=128, timed_rounds=3),
    # The rehearsal: the same steps on a few clients, a few rounds and DynaFed's conformance budget.
    "tiny": CheckScale(clients=8, width=8, timed_rounds=1, tiny_dynafed=True,
                       paper_overrides=("rounds=6", "partition.clients=8", "model.width=8")),
}


@dataclass
class Report:
    """Everything measured so far; written out whole after each part."""
    out: Path
    data: dict = field(default_factory=dict)
    executor_rows: list[dict] = field(default_factory=list)
    run_dirs: list[Path] = field(default_factory=list)

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.out / "gpu_check.json",
                      json.dumps(_strict(self.data), indent=2, allow_nan=False, default=str) + "\n")
        if self.executor_rows:
            tmp = self.out / "executors.csv.part"
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(self.executor_rows[0]))
                writer.writeheader()
                writer.writerows(self.executor_rows)
            tmp.replace(self.out / "executors.csv")
        _write_atomic(self.out / "summary.md", render_summary(self.data))
        if self.run_dirs:
            tmp = self.out / "runs.tar.gz.part"
            try:
                with tarfile.open(tmp, "w:gz") as tar:
                    for run_dir in self.run_dirs:
                        tar.add(run_dir, arcname=run_dir.name.removeprefix(".tmp-"), filter=_results_only)
                tmp.replace(self.out / "runs.tar.gz")
            finally:
                tmp.unlink(missing_ok=True)


def _results_only(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """A stopped run's folder without its checkpoint (clients' optimizer states: hundreds of MiB at the
    paper's scale) and its writer's claim."""
    name = Path(info.name).name
    return None if name in (CHECKPOINT_NAME, CLAIM_FILE) else info


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    tmp.replace(path)


def _strict(value):
    """``value`` with every NaN or infinity as null, so that the file is strict JSON (jq, browsers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "git_revision": git_revision(), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return env


# ------------------------------------------------------------------------------------- (a) executors

def executor_config(scale: CheckScale, executor: str, device: torch.device, rounds: int) -> RunConfig:
    data = perf_config("fmnist", scale.width, threads=1, rounds=rounds, scale="paper", executor=executor,
                       device=str(device), clients={"persistent_state": True})
    data["dataset"] = {"name": "fmnist"}  # all 60,000 images
    data["partition"].update(alpha=PAPER_CELL["alpha"], clients=scale.clients)
    data["checkpoint_every"] = 0  # a checkpoint of 80 clients' Adam states is ~200 MB: not what is timed
    return config_from_dict(data)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()  # what an earlier run left behind is not this one's memory
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def time_executor(scale: CheckScale, executor: str, device: torch.device, data_dir, results: Path) -> dict:
    """Seconds per round over ``timed_rounds`` after a warm-up round (its one-off costs reported apart),
    and before a last round that evaluates (its evaluation seconds reported apart)."""
    cfg = executor_config(scale, executor, device, 2 + scale.timed_rounds)
    _peak_reset(device)
    run_dir = run(cfg, suite="gpu-check-executors", results=results, data_dir=data_dir, progress=False)
    peak = _peak_mib(device)
    timings = _by_metric(read_long_csv(run_dir / TIMINGS_FILE))
    samples = _by_metric([r for r in read_long_csv(run_dir / ROUNDS_FILE) if r.split == "train"])["samples"]
    timed = [r for r in sorted(timings["round_seconds"]) if 1 < r < cfg.rounds]
    client = sum(timings["client_seconds"][r] for r in timed)
    # The vectorised executor falls back to the sequential one on vmap's own limits; say so if it did.
    fallback = json.loads((run_dir / SUMMARY_FILE).read_text())["execution"].get("executor_fallback")
    return {"executor": executor, "fallback": fallback or "", "device": str(device), "width": scale.width, "clients": scale.clients,
            "clients_per_round": cfg.clients_per_round, "timed_rounds": len(timed),
            "first_round_seconds": timings["round_seconds"][1],
            "round_seconds": sum(timings["round_seconds"][r] for r in timed) / len(timed),
            "client_seconds": client / len(timed),
            "samples_per_second": sum(samples[r] for r in timed) / client,
            "eval_seconds": timings["eval_seconds"][max(timings["eval_seconds"])],
            "peak_memory_mib": peak}


def _by_metric(rows) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for row in rows:
        out.setdefault(row.metric, {})[row.round] = row.value
    return out


def first_round_parameters(cfg: RunConfig, device: torch.device, data_dir, scratch: Path) -> dict:
    """The global parameters after round 1 (and before it), and their validation accuracy, through the
    runner's own wiring of ``cfg``."""
    fed = build_federation(cfg.dataset, cfg.partition, device, data_dir, eval_test=False)
    out = RunDirectory(scratch, f"gpu-check-{cfg.executor}", cfg.run_id())
    out.open(cfg.experiment_dict())
    try:
        loop = RoundLoop(cfg, fed, device, out, progress=False, on_eval=None)
        start = loop.global_flat.detach().cpu().clone()
        loop.algorithm.setup(loop.global_model, loop.global_flat)
        loop.one_round(1, None)
        model = loop.global_model.eval()
        with torch.no_grad():
            logits = torch.cat([model(fed.val.x[i:i + cfg.eval_batch_size]).cpu()
                                for i in range(0, len(fed.val), cfg.eval_batch_size)])
        return {"start": start, "after": loop.global_flat.detach().cpu().clone(), "val_logits": logits,
                "val_accuracy": (logits.argmax(1) == fed.val.y.cpu()).float().mean().item()}
    finally:
        out.abandon()


def compare_executors(scale: CheckScale, device: torch.device, data_dir, scratch: Path) -> dict:
    """Both executors' global models after one round from the same start, in float32, compared by their
    validation logits. Their parameters are compared too, but with a caveat: a convolution bias followed
    by instance norm has a gradient of exactly zero in theory, so Adam turns its rounding noise into
    steps of up to ``lr``, which differ between any two kernels (measured on the CPU: those biases
    differed by up to 1.4e-3, every other parameter by under 1e-7)."""
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        got = {kind: first_round_parameters(executor_config(scale, kind, device, 1), device, data_dir, scratch / kind)
               for kind in EXECUTORS}
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    seq, vec = got["sequential"], got["vectorised"]
    same_start = bool(torch.equal(seq["start"], vec["start"]))
    largest_logit = seq["val_logits"].abs().max().item()
    relative = (seq["val_logits"] - vec["val_logits"]).abs().max().item() / max(largest_logit, 1e-12)
    return {"same_start": same_start, "val_images": len(seq["val_logits"]),
            "relative_logit_difference": relative, "tolerance": EQUAL_TOLERANCE,
            "prediction_agreement": (seq["val_logits"].argmax(1) == vec["val_logits"].argmax(1)).float().mean().item(),
            "max_abs_parameter_difference": (seq["after"] - vec["after"]).abs().max().item(),
            "equal": same_start and relative <= EQUAL_TOLERANCE,
            "val_accuracy": {kind: got[kind]["val_accuracy"] for kind in EXECUTORS}}


# --------------------------------------------------------------------------------- (b) paper runs

def paper_cells(scale: CheckScale, device: torch.device, rounds: int | None = None,
                iterations: int | None = None) -> dict[str, RunConfig]:
    """Suite paper's Fashion-MNIST alpha 0.01 seed-0 FedAvg and DynaFed cells on ``device``, vectorised,
    without checkpoints (their writing is not what is timed)."""
    overrides = [f"device={device}", "executor=vectorised", "eval_every=1", "checkpoint_every=0",
                 *scale.paper_overrides]
    if scale.tiny_dynafed:
        overrides += [f"algorithms.dynafed.{k}={v}" for k, v in get_algorithm("dynafed").tiny_budget.items()]
    if rounds is not None:
        overrides.append(f"rounds={rounds}")
    if iterations is not None:
        overrides.append(f"algorithms.dynafed.iterations={iterations}")
    cells = load_suite("paper", overrides=overrides).cells
    chosen = {c.algorithm: c for c in cells if c.dataset.name == PAPER_CELL["dataset"] and c.seed == PAPER_CELL["seed"]
              and c.partition.alpha == PAPER_CELL["alpha"] and c.algorithm in PAPER_ALGORITHMS}
    return {name: chosen[name] for name in PAPER_ALGORITHMS}


def synthesis_probe(cfg: RunConfig, device: torch.device, input_shape: tuple[int, int, int], num_classes: int) -> dict:
    """Seconds per matching iteration at ``cfg``'s DynaFed budget (one warm-up, two timed)."""
    p = cfg.hparams
    row = measure_synthesis(cfg.model.width, num_classes, p.ipc, 2, p.syn_steps, device,
                            snapshots=p.trajectory_length, shape=input_shape)
    return {"seconds_per_iteration": row["seconds_per_iteration"], "iterations": p.iterations,
            "predicted_synthesis_seconds": row["seconds_per_iteration"] * p.iterations,
            "peak_memory_mib": row["peak_mb"] if device.type == "cuda" else float("nan")}


def plan_budget(planned_rounds: int, snapshots: int, round_seconds: float, seconds_per_iteration: float,
                iterations: int, seconds_left: float) -> dict:
    """Rounds and matching iterations for (b): the paper's if two runs and one synthesis fit the usable
    time (four fifths of the time left). Otherwise the synthesis is capped at half the usable time
    (fewer iterations, only if it needs more) and both runs get as many rounds as then fit, never fewer
    than DynaFed needs to synthesise (``snapshots + 1``; the runs' deadlines stop them if even that is
    too many)."""
    usable = 0.8 * seconds_left
    kept_iterations = iterations
    fits = 2 * planned_rounds * round_seconds + iterations * seconds_per_iteration <= usable
    if not fits and iterations * seconds_per_iteration > 0.5 * usable:
        kept_iterations = max(1, int(0.5 * usable / max(seconds_per_iteration, 1e-9)))
    synthesis = kept_iterations * seconds_per_iteration
    fit = int((usable - synthesis) / (2 * max(round_seconds, 1e-9)))
    rounds = max(min(planned_rounds, fit), snapshots + 1)
    need = 2 * rounds * round_seconds + synthesis
    deviations = ([f"rounds {rounds} (paper {planned_rounds})"] if rounds != planned_rounds else []) + \
                 ([f"matching iterations {kept_iterations} (paper {iterations})"] if kept_iterations != iterations else [])
    note = (f"the paper's {planned_rounds} rounds and {iterations} matching iterations fit" if not deviations else
            "cut to fit the time left: " + ", ".join(deviations)) + \
           f" (predicted {need:.0f} s of the {seconds_left:.0f} s left)"
    return {"rounds": rounds, "iterations": kept_iterations, "planned_rounds": planned_rounds,
            "planned_iterations": iterations, "deviations": deviations, "predicted_seconds": need,
            "seconds_left": seconds_left, "note": note}


def run_paper_cell(cfg: RunConfig, results: Path, data_dir, deadline: float) -> tuple[Path, dict]:
    """Run one cell until it finishes or passes ``deadline``; its folder and what it measured."""
    try:
        run_dir = run(cfg, suite="gpu-check-paper", results=results, data_dir=data_dir, progress=False,
                      deadline=deadline)
        status = json.loads((run_dir / SUMMARY_FILE).read_text())["status"]  # complete or diverged
    except RunStopped as stopped:
        run_dir, status = stopped.run_dir, "stopped at the time budget"
    return run_dir, describe_run(run_dir, cfg, status)


def describe_run(run_dir: Path, cfg: RunConfig, status: str) -> dict:
    rows = read_long_csv(run_dir / ROUNDS_FILE)
    metrics = _by_metric([r for r in rows if r.split in ("test", "val")])
    test = {r.round: r.value for r in rows if r.split == "test" and r.metric == "accuracy"}
    val = {r.round: r.value for r in rows if r.split == "val" and r.metric == "accuracy"}
    timings = _by_metric(read_long_csv(run_dir / TIMINGS_FILE))
    rounds_done = max(timings["round_seconds"])
    server = {f"server.{r.metric}": r.value for r in rows if r.split == "server"}
    last = max(test) if test else None
    best = max((r for r in val if r > 0), key=lambda r: (val[r], -r), default=None)
    out = {"algorithm": cfg.algorithm, "run_id": cfg.run_id(), "status": status, "rounds": cfg.rounds,
           "rounds_done": rounds_done, "executor": cfg.executor,
           "matching_iterations": cfg.hparams.iterations if cfg.algorithm == "dynafed" else None,
           "final_round": last, "final_test_accuracy": test.get(last) if last is not None else None,
           "best_val_round": best, "test_accuracy_at_best_val": test.get(best) if best is not None else None,
           "total_seconds": sum(timings["round_seconds"].values()),
           "mean_round_seconds": sum(timings["round_seconds"].values()) / rounds_done,
           # DynaFed's synthesis and the diagnostic after it happen once: a round's cost is the rest.
           "mean_round_seconds_without_one_off": sum(
               seconds - sum(timings.get(f"server_{part}_seconds", {}).get(rnd, 0.0) for part in ONE_OFF_PARTS)
               for rnd, seconds in timings["round_seconds"].items()) / rounds_done,
           "median_round_seconds": sorted(timings["round_seconds"].values())[rounds_done // 2],
           "mean_eval_seconds": sum(timings.get("eval_seconds", {}).values()) / rounds_done,
           "accuracy_curve": {"round": sorted(test), "test_accuracy": [test[r] for r in sorted(test)]},
           "evaluated_rounds": len(metrics.get("accuracy", {}))}
    for part in (*ONE_OFF_PARTS, "finetune"):
        seconds = timings.get(f"server_{part}_seconds")
        if seconds:
            out[f"{part}_seconds"] = sum(seconds.values())
    if "finetune_seconds" in out:
        out["finetune_seconds_per_round"] = out["finetune_seconds"] / len(timings["server_finetune_seconds"])
    if server:
        out["server_diagnostics_last"] = server
    summary = run_dir / SUMMARY_FILE
    if summary.is_file():
        saved = json.loads(summary.read_text())
        out["mechanism"] = {k: v for k, v in saved.get("mechanism", {}).items() if k != "series"}
        out["fallback"] = saved.get("execution", {}).get("executor_fallback") or ""
    return out


def paper_reference() -> dict[str, float]:
    """The paper's Fashion-MNIST alpha 0.01 accuracy of FedAvg and DynaFed (reports/reference)."""
    out = {}
    with open(REFERENCE_TABLE, newline="") as fh:
        for row in csv.DictReader(fh):
            if (row["dataset"], float(row["alpha"])) == (PAPER_CELL["dataset"], PAPER_CELL["alpha"]) \
                    and row["algorithm"] in PAPER_ALGORITHMS:
                out[row["algorithm"]] = float(row["accuracy_mean"])
    return out


# ------------------------------------------------------------------------------------------ driver

# Stand-ins when a measurement failed, so that (b) still runs: both far slower than any GPU is expected.
UNMEASURED_ROUND_SECONDS = 2.0
UNMEASURED_ITERATION_SECONDS = 0.5


def _guarded(report: Report, part: str, fn, *args):
    """``fn(*args)``, or None with the error's traceback kept in the report (and written at once)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - one failed part must not cost the others their one try
        report.data.setdefault("errors", {})[part] = traceback.format_exc(limit=12)
        report.write()
        return None


def gpu_check(out: Path, scale_name: str = "full", device: str | None = None, data_dir=None,
              budget_seconds: float = 420.0) -> dict:
    """Run (a) then (b) within ``budget_seconds`` (data loading and (a) included); return the report."""
    start = time.monotonic()
    end = start + budget_seconds
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scale = SCALES[scale_name]
    if scale_name == "full" and dev.type != "cuda":
        raise GpuCheckError(f"--gpu-scale: full is the paper setting for a CUDA GPU, and the device is {dev}; "
                            "use --gpu-scale tiny to rehearse it here")
    report = Report(Path(out))
    report.data = {"check": "hetbench GPU check (issue G)", "scale": scale_name, "budget_seconds": budget_seconds,
                   "environment": environment(dev), "paper_reference": paper_reference()}
    report.write()
    with tempfile.TemporaryDirectory(prefix="hetbench-gpu-check-") as tmp:
        scratch = Path(tmp)
        # (a) Each part runs even when one before it failed: there is one try on the GPU.
        for executor in EXECUTORS:
            row = _guarded(report, f"time_{executor}", time_executor, scale, executor, dev, data_dir,
                           scratch / "executors")
            if row is not None:
                report.executor_rows.append(row)
                report.data["executors"] = report.executor_rows
                report.write()
        timed = {r["executor"]: r for r in report.executor_rows}
        if len(timed) == 2:
            report.data["vectorised_speedup"] = timed["sequential"]["round_seconds"] / timed["vectorised"]["round_seconds"]
        report.data["equality"] = _guarded(report, "equality", compare_executors, scale, dev, data_dir,
                                           scratch / "equality")
        report.data["part_a_seconds"] = time.monotonic() - start
        report.write()
        # (b) The vectorised executor runs it; its round time from (a) (or, failing that, the sequential
        # one's, an upper bound) plans it.
        basis = timed.get("vectorised") or timed.get("sequential")
        round_seconds = basis["round_seconds"] + basis["eval_seconds"] if basis else UNMEASURED_ROUND_SECONDS
        cells = paper_cells(scale, dev)
        dynafed = cells["dynafed"]
        facts = DATASETS[dynafed.dataset.name].facts
        probe = _guarded(report, "synthesis_probe", synthesis_probe, dynafed, dev, tuple(facts.input_shape),
                         facts.num_classes)
        seconds_per_iteration = probe["seconds_per_iteration"] if probe else UNMEASURED_ITERATION_SECONDS
        plan = plan_budget(dynafed.rounds, dynafed.hparams.trajectory_length, round_seconds,
                           seconds_per_iteration, dynafed.hparams.iterations, end - time.monotonic())
        plan["round_seconds_from_a"] = round_seconds
        report.data["synthesis_probe"] = probe
        report.data["plan"] = plan
        report.write()
        if plan["deviations"]:
            cells = paper_cells(scale, dev, plan["rounds"], plan["iterations"])
        results = scratch / "paper"
        runs = {}
        # FedAvg may overrun its prediction as long as what DynaFed is predicted to need is left to it.
        synthesis = plan["iterations"] * seconds_per_iteration
        fedavg_deadline = end - 1.1 * (synthesis + plan["rounds"] * round_seconds)
        for name, deadline in (("fedavg", fedavg_deadline), ("dynafed", end)):
            done = _guarded(report, f"run_{name}", run_paper_cell, cells[name], results, data_dir, deadline)
            if done is not None:
                report.run_dirs.append(done[0])
                runs[name] = done[1]
            report.data["paper_runs"] = runs
            report.write()
        report.data["elapsed_seconds"] = time.monotonic() - start
        report.write()  # while the run folders it packs still exist
    return report.data


# ----------------------------------------------------------------------------------------- summary

def _fmt(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def render_summary(data: dict) -> str:
    env = data.get("environment", {})
    lines = [f"# GPU check ({data.get('scale')} scale)", "",
             f"Machine: {env.get('gpu', env.get('device'))}; torch {env.get('torch')}, CUDA {env.get('cuda', '–')}, "
             f"cuDNN {env.get('cudnn', '–')}, Python {env.get('python')}; git revision {env.get('git_revision')}.",
             f"Time budget {data.get('budget_seconds'):.0f} s; elapsed {_fmt(data.get('elapsed_seconds'), '.0f')} s "
             "(written after each part: a missing section did not run).", ""]
    rows = data.get("executors", [])
    if rows:
        first = rows[0]
        lines += ["## (a) Executors", "",
                  f"Fashion-MNIST, ConvNet-{first['width']}, {first['clients']} clients, {first['clients_per_round']} a "
                  f"round, 1 local epoch at batch 32, persistent Adam 1e-3; mean of {first['timed_rounds']} round(s) "
                  "between a warm-up round and a last round that evaluates (its evaluation: eval s).", "",
                  "Peak GPU memory is the whole run's: the data, training and evaluation in batches of 1000.", "",
                  "| executor | s/round | client s/round | samples/s | first round s | eval s | peak GPU MiB |",
                  "|:---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['executor']} | {_fmt(r['round_seconds'], '.3f')} | {_fmt(r['client_seconds'], '.3f')} | "
                         f"{_fmt(r['samples_per_second'], '.0f')} | {_fmt(r['first_round_seconds'], '.2f')} | "
                         f"{_fmt(r['eval_seconds'], '.3f')} | {_fmt(r['peak_memory_mib'], '.0f')} |")
        if "vectorised_speedup" in data:
            lines += ["", f"Vectorised speed-up per round: {data['vectorised_speedup']:.2f}x."]
    eq = data.get("equality")
    if eq:
        lines += ["", f"One round from the same start, float32 (TF32 off), on {eq['val_images']} validation images: "
                      f"largest logit difference {eq['relative_logit_difference']:.1e} of the largest logit "
                      f"(tolerance {eq['tolerance']:.0e}), predictions agree on {100 * eq['prediction_agreement']:.2f}%, "
                      f"validation accuracy sequential {100 * eq['val_accuracy']['sequential']:.2f}% and vectorised "
                      f"{100 * eq['val_accuracy']['vectorised']:.2f}%: {'equal' if eq['equal'] else 'NOT equal'} within "
                      f"tolerance. Largest parameter difference {eq['max_abs_parameter_difference']:.1e} (convolution "
                      "biases before instance norm have no true gradient, so Adam steps them by rounding noise)."]
    plan, probe = data.get("plan"), data.get("synthesis_probe")
    if plan:
        timing = (f" A matching iteration took {probe['seconds_per_iteration']:.3f} s (mean of two after a warm-up), "
                  f"so the paper's {probe['iterations']} were predicted at {probe['predicted_synthesis_seconds']:.0f} s."
                  if probe else " The matching iteration was not timed (see Failed), so a stand-in time planned it.")
        lines += ["", "## (b) FedAvg and DynaFed, paper setting, Fashion-MNIST alpha 0.01, seed 0", "",
                  f"Plan: {plan['note']}.{timing}"]
    runs = data.get("paper_runs", {})
    if runs:
        ref = data.get("paper_reference", {})
        lines += ["", "| algorithm | status | rounds | final test % | paper % | s/round (mean, without one-off work) | "
                      "synthesis s | synthetic set alone, val % |", "|:---|:---|---:|---:|---:|---:|---:|---:|"]
        for name, r in runs.items():
            acc = r.get("final_test_accuracy")
            alone = r.get("server_diagnostics_last", {}).get("server.synthetic_only_val_accuracy")
            lines.append(f"| {name} | {r['status']} | {r['rounds_done']} of {r['rounds']} | "
                         f"{_fmt(None if acc is None else 100 * acc)} | {_fmt(ref.get(name))} | "
                         f"{_fmt(r['mean_round_seconds_without_one_off'], '.3f')} | "
                         f"{_fmt(r.get('synthesis_seconds'), '.1f')} | "
                         f"{_fmt(None if alone is None else 100 * alone, '.1f')} |")
        mechanism = runs.get("dynafed", {}).get("mechanism")
        if mechanism:
            lines += ["", f"DynaFed's mechanism: {'engaged' if mechanism.get('engaged') else 'NOT engaged'}: "
                          f"{mechanism.get('evidence', '')}."]
    for part, text in data.get("errors", {}).items():
        lines += ["", f"## Failed: {part}", "", "```", text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ bundle

TRAVEL_LIMIT_MIB = 64  # what the device tool sends: the checkout's tracked and unignored files + carried ones
BUNDLE_DATA = "data"


def device_command(bundle: str = ".gpu", budget_seconds: float = 420.0, scale: str = "full") -> str:
    """The one command for the GPU machine, run from the copy's root with ``bundle`` carried (the CPU
    rehearsal runs the same line at ``scale`` tiny)."""
    return (f"set -o pipefail; export HETBENCH_DATA={bundle}/{BUNDLE_DATA} HETBENCH_OFFLINE=1 PYTHONUNBUFFERED=1 "
            f"HETBENCH_GIT_REVISION=$(cat {bundle}/revision.txt); "
            f"python3 -m benchmarks perf --gpu-check \"$OUT\" --gpu-scale {scale} --budget-seconds {budget_seconds:g} "
            f"2>&1 | tee \"$OUT/log.txt\"")


def make_bundle(folder: Path, data_dir=None, repo: Path | None = None) -> dict:
    """Fill ``folder`` (git-ignored, carried to the GPU machine) with the Fashion-MNIST files and this
    checkout's git revision; return what travels and its size against the tool's limit."""
    import shutil
    import subprocess
    from benchmarks.data.datasets import source_files

    repo = repo or Path(__file__).resolve().parents[2]
    data = folder / BUNDLE_DATA
    data.mkdir(parents=True, exist_ok=True)
    for path in source_files("fmnist", data_dir):
        if path.resolve() != (data / path.name).resolve():
            shutil.copyfile(path, data / path.name)
    (folder / "revision.txt").write_text(git_revision() + "\n")
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, capture_output=True,
                                check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        listed = []
    tree = sum((repo / name).stat().st_size for name in listed if name and (repo / name).is_file())
    carried = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    total = (tree + carried) / 2 ** 20
    return {"folder": str(folder), "tree_mib": tree / 2 ** 20, "carried_mib": carried / 2 ** 20, "total_mib": total,
            "fits": total <= TRAVEL_LIMIT_MIB}
