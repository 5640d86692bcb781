"""Sweep cells as Ray tasks (``hetbench sweep SUITE --backend ray``), on a running cluster or a local one.

Each cell is one task that calls the sweep's own per-cell function, so a run writes the same folders and
the same bytes as with the local backend. A task declares what its run uses: the run's thread count as
CPUs, and a share of a GPU when the run's device is CUDA, so that Ray packs runs onto nodes. The results
root must be one folder shared by every node at the same path: the run folders' claims and checkpoints
there let a task that Ray retries after its worker process died resume the run at once. When a whole node
dies, its claims keep their last heartbeat: a retry elsewhere fails on the claim until it is stale
(10 minutes), so run the sweep again after that and the run resumes from its checkpoint.

Ray is an optional dependency (the ``cluster`` extra) and is imported only here, only for this backend.
"""
from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from benchmarks.core.typed import ConfigError
from benchmarks.engine.kernels import kernel_env, pinned
from benchmarks.experiments.config import RunConfig

# Ray reruns a task whose worker process or node died (not one whose run raised); the rerun resumes
# the run from its last checkpoint.
TASK_RETRIES = 3
# Ray retries an unreachable head for minutes, printing warnings; a plain HOST:PORT is checked first.
CONNECT_SECONDS = 10.0
_HOST_PORT = re.compile(r"(?P<host>[^:/\s]+):(?P<port>\d+)")


@dataclass(frozen=True)
class RayOptions:
    """Where the cells run: ``address`` of a running cluster (``auto``, ``HOST:PORT``, ``ray://...``), or
    None to start a local cluster of ``--jobs`` CPUs; ``gpus_per_run``, the GPU share of a CUDA run."""
    address: str | None = None
    gpus_per_run: float = 1.0

    def __post_init__(self):
        if not 0 < self.gpus_per_run <= 1:
            raise ConfigError(f"--gpus-per-run: {self.gpus_per_run!r} must be > 0 and <= 1 (a run uses one GPU "
                              "at most; 0.25 packs four runs onto each GPU)")


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray: ray is not installed here; install the cluster extra "
                          "(pip install 'hetbench[cluster]', or make setup)") from None
    return ray


def task_resources(cfg: RunConfig, gpus_per_run: float) -> dict[str, float]:
    return {"num_cpus": cfg.execution.threads, "num_gpus": gpus_per_run if cfg.device.startswith("cuda") else 0}


def check_devices(cells: list[RunConfig]) -> None:
    """Ray gives each GPU task its own device as ``cuda``: a fixed index would name another task's GPU."""
    for device in sorted({c.device for c in cells}):
        if device.startswith("cuda:"):
            raise ConfigError(f"device: {device!r} names a GPU, but on Ray each run gets its GPU from the "
                              "scheduler; use device = \"cuda\" with --backend ray")


def check_fits(cells: list[RunConfig], nodes: list[dict], gpus_per_run: float) -> None:
    """Refuse cells no node can hold: Ray would keep such a task waiting for ever."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    most_cpus = max((r.get("CPU", 0) for r in alive), default=0)
    most_gpus = max((r.get("GPU", 0) for r in alive), default=0)
    for cfg in cells:
        need = task_resources(cfg, gpus_per_run)
        if need["num_cpus"] > most_cpus:
            raise ConfigError(f"threads: {need['num_cpus']} CPUs per run, but the largest node of the Ray cluster "
                              f"has {most_cpus:g} (--jobs sets the CPUs of a local cluster)")
        if need["num_gpus"] > most_gpus:
            raise ConfigError(f"device: {cfg.device!r} needs {need['num_gpus']:g} GPU per run, but the Ray "
                              f"cluster's nodes have {most_gpus:g}")


def check_reachable(address: str) -> None:
    """Refuse a ``HOST:PORT`` where nothing listens, at once; other forms (``auto``, ``ray://``) Ray checks."""
    match = _HOST_PORT.fullmatch(address.strip())
    if not match:
        return
    try:
        socket.create_connection((match["host"], int(match["port"])), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise ConfigError(f"--address: nothing answers at {address} ({exc.strerror or exc}); start the cluster's "
                          "head there with `ray start --head`, or pass its address as `ray start` printed it") from None


def _connect(ray, options: RayOptions, jobs: int) -> None:
    if options.address is not None:
        check_reachable(options.address)
    try:
        if options.address is None:  # "local" starts a cluster here even where RAY_ADDRESS names another
            start_local_ray(jobs)
        else:
            ray.init(address=options.address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or "a local cluster"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--address: cannot start or reach Ray at {where} ({first})") from None


def start_local_ray(num_cpus: int | None = None, attempts: int = 3, **init_args) -> None:
    """Start a local Ray cluster, again (up to ``attempts`` times) if it does not come up. On a machine whose
    cores are busy (a sweep on both) two startup failures were seen here: the raylet missing Ray's fixed 30 s
    to register (ray.init raises a plain Exception), and the raylet aborting ("Check failed" in
    node_manager.cc) 16 s after it started, while it waited for its dashboard agent's ports (Ray issue
    62883 reports the same abort). After the second, Flower's simulation waited forever for its actors."""
    ray = import_ray()
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**{"address": "local", "num_cpus": num_cpus, "include_dashboard": False, **init_args})
            if any(node.get("Alive") for node in ray.nodes()):
                return
            raise RuntimeError("the local Ray cluster started without a live node")
        except Exception:  # noqa: BLE001 (Ray raises Exception itself for its startup timeout)
            ray.shutdown()
            if attempt == attempts:
                raise


def pinned_environment(cfg: RunConfig) -> dict:
    """A pinned run's kernel caps as a Ray task option: a cluster's workers keep the environment of their
    ``ray start``, and Ray starts a fresh worker, whose torch loads capped, for a task that sets env_vars."""
    env = kernel_env(pinned(cfg))
    return {"runtime_env": {"env_vars": env}} if env else {}


def run_on_ray(todo: list[RunConfig], cell_fn: Callable, suite_name: str, root: str, data_dir, jobs: int,
               options: RayOptions) -> Iterator[tuple[RunConfig, BaseException | None]]:
    """Run ``cell_fn(config_dict, suite, root, data_dir, progress=False)`` for every cell as a Ray task; yields
    each cell with None or the exception its run raised, as runs finish. Unfinished tasks are cancelled
    when the caller stops (Ctrl-C): their runs resume from their checkpoints next time."""
    if not todo:
        return  # every cell is finished: no cluster to start or reach
    ray = import_ray()
    check_devices(todo)
    _connect(ray, options, jobs)
    pending: list = []
    try:
        check_fits(todo, ray.nodes(), options.gpus_per_run)
        task = ray.remote(cell_fn)
        cells = {task.options(**task_resources(cfg, options.gpus_per_run), max_retries=TASK_RETRIES,
                              **pinned_environment(cfg))
                 .remote(cfg.to_dict(), suite_name, root, data_dir, False): cfg for cfg in todo}
        pending = list(cells)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    ray.get(ref)
                except Exception as exc:  # a failed cell must not stop the others
                    yield cells[ref], getattr(exc, "cause", None) or exc  # the run's own error, not Ray's wrapper
                else:
                    yield cells[ref], None
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.shutdown()
