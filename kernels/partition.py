"""The DEM cells of one run partitioned across Ray actors (``material.dem.workers = N``).

:func:`build_cells` is the registry's builder of ``model = "dem"``: with one worker it is
``kernels.rve_batch.build_cells`` (no Ray imported); with more, a :class:`PartitionedBatch`, which
has the ``MaterialBatch`` interface of ``RVEBatch``. Each macro step it reads the strain increments
to numpy once, sends every actor (``kernels.cell_worker.CellWorker``) its contiguous slice before
waiting on any, gathers the stresses as they arrive into fixed slots and writes them back: every
cell computes exactly what it computes in one process, so the results are the same bit for bit.
Snapshots gather the slices into the single-process format (a checkpoint resumes with any
partition). A lost actor raises ``kernels.material.MaterialFailure`` naming the worker and its
Gauss points.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from kernels import placement, runtime
from kernels.cell_worker import CellWorker
from kernels.material import MaterialFailure
from kernels.dem_neighbors import list_capacity
from kernels.packing import load_packing
from kernels.rve_batch import CellReports
from kernels.rve_batch import build_cells as build_local

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 30.0      # how long closing actors may take to write Taichi's kernel cache


def build_cells(config, request):
    """The DEM batch of a run: all cells here (``workers = 1``) or partitioned over Ray actors."""
    if config.settings.workers == 1:
        return build_local(config, request)
    return PartitionedBatch(config, request)


AUTH_HINT = ("if the cluster uses token authentication, give this process its token: RAY_AUTH_TOKEN, "
             "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")


def use_token_auth_if_available() -> bool:
    """Send Ray's authentication token to a cluster given by address, when one is available.

    Ray 2.59-2.60 start local clusters (``ray start --head``) with token authentication on and write
    the token to ``~/.ray/auth_token``, but a driver that connects to ``HOST:PORT`` sends no token
    unless ``RAY_AUTH_MODE=token`` is set, and is refused. This applies Ray's own rule for new local
    clusters to addresses (Ray's ``maybe_enable_token_auth_if_token_available``): with
    ``RAY_AUTH_MODE`` unset and a token in ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``, token mode is set for this process and the workers it starts (a cluster
    without authentication accepts the token too); an explicit ``RAY_AUTH_MODE`` is kept. Returns
    whether token mode is on; always False on Ray before 2.52, which has no token authentication."""
    try:
        from ray._private.authentication import authentication_token_setup as setup
    except ImportError:
        return False
    setup_log = logging.getLogger(setup.__name__)
    level = setup_log.level
    setup_log.setLevel(logging.ERROR)           # Ray's "token authentication is enabled" notice
    try:
        return setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        setup_log.setLevel(level)


def connect(address: str | None, num_cpus: int | None = None, runtime_env: dict | None = None):
    """Ray, connected to the cluster at ``address`` (``HOST:PORT``) or to a new local one (never one
    that ``ray start`` left running on this machine) of ``num_cpus`` CPUs (default: all); quiet.
    ``runtime_env``: Ray's per-job environment (e.g. ``env_vars``). Connected already: that Ray."""
    import ray

    if not ray.is_initialized():
        quiet = dict(log_to_driver=False, logging_level=logging.ERROR, runtime_env=runtime_env)
        try:
            if address:
                use_token_auth_if_available()
                ray.init(address=address, **quiet)
            else:
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"--address {address}" if address else "a local Ray cluster"
            hint = f"; {AUTH_HINT}" if address else ""
            raise placement.PlacementError(f"{where}: Ray could not start or connect "
                                           f"({str(exc).strip().splitlines()[0][:200]}){hint}") from None
    return ray


def _worker_arch() -> str:
    """The ``--arch`` an actor starts Taichi with: the driver's backend."""
    return {"cuda": "cuda", "vulkan": "vulkan"}.get(runtime.arch_name(), "cpu")


class PartitionedBatch(CellReports):
    """``request.n_points`` DEM cells split into ``config.settings.workers`` contiguous slices, each
    advanced by its own Ray actor (see the module docstring). ``timings()`` gives the exchange's
    totals and per-step means (s); ``info()`` the slices, their placement and the actors."""

    def __init__(self, config, request):
        s = config.settings
        self.n_cells, self.dim = request.n_points, request.dim
        self._init_reports(s.cap, s.on_cap, s.max_capped, s.steps_per_increment)
        self.points_per_element = request.points_per_element
        packings = [load_packing(p) for p in s.packing]
        slices = placement.split(request.n_points, s.workers)
        ray = connect(request.cluster)
        gpu = _worker_arch() != "cpu"
        capacity = s.overrides.get("max_contacts_per_particle") or list_capacity(    # as the workers size it
            packings, s.overrides.get("skin_factor", 0.3))
        per_cell, per_batch = placement.cell_bytes(max(p.n for p in packings), request.dim, capacity)
        nodes = [n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")]
        self.plan = placement.plan(slices, per_cell, per_batch, gpu, ray.available_resources(), nodes,
                                   placement.gpu_memory() if gpu else None)
        self.slices = slices
        remote = ray.remote(CellWorker)
        self.actors = [remote.options(**o).remote(_worker_arch(), runtime.precision(), self.plan.threads)
                       for o in self.plan.options]
        request = replace(request, cluster=None)
        built = self._gather([a.build.remote(config, replace(request, n_points=b - a0), a0, packings)
                              for a, (a0, b) in zip(self.actors, slices)])
        self.notes = built[0]["notes"]
        self.workers = [{k: r[k] for k in ("pid", "node", "arch", "nbytes")} for r in built]
        self._stress0 = np.concatenate([r["stress0"] for r in built])
        self._take(built)
        self._t = {"updates": 0, "send_s": 0.0, "wait_s": 0.0, "gather_s": 0.0, "compute_max_s": 0.0,
                   "update_s": 0.0}

    @property
    def n_points(self) -> int:
        return self.n_cells

    def _lost(self, i: int, exc: Exception) -> str:
        a, b = self.slices[i]
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        return (f"DEM worker {i} of {len(self.slices)} (Gauss points {a}-{b - 1}, pid "
                f"{self.workers[i]['pid'] if hasattr(self, 'workers') else '?'}) was lost: "
                f"{type(exc).__name__}{': ' + reason if reason else ''}")

    def _gather(self, futures: list) -> list:
        """The results of ``futures`` (one per worker) in worker order, taken as they complete; the
        seconds blocked waiting are added to ``self._waited``."""
        import ray

        index = {f: i for i, f in enumerate(futures)}
        out, pending, self._waited = [None] * len(futures), list(futures), 0.0
        while pending:
            t = time.perf_counter()
            done, pending = ray.wait(pending, num_returns=1)
            self._waited += time.perf_counter() - t
            for f in done:
                i = index[f]
                try:
                    out[i] = ray.get(f)
                except ray.exceptions.RayTaskError as exc:       # the worker's own error: raise it here
                    raise exc.cause from None
                except ray.exceptions.RayError as exc:           # the actor died, its node was lost, OOM
                    raise MaterialFailure(self._lost(i, exc)) from None
        return out

    def _take(self, results: list) -> None:
        """The per-cell reports of every slice, concatenated in Gauss-point order."""
        self.unbalanced = np.concatenate([r["unbalanced"] for r in results])
        self.steps_used = np.concatenate([r["steps"] for r in results])
        self.contacts = np.concatenate([r["contacts"] for r in results])
        self._cap = np.concatenate([r["cap"] for r in results])
        self.inertia = np.concatenate([r["inertia"] for r in results])

    def update(self, deps, stress) -> None:
        """Send every slice its increments (n, 3, 3), then gather and write back the stresses (Pa)."""
        t0 = time.perf_counter()
        d = deps.to_numpy()
        futures = [a.update.remote(d[a0:b]) for a, (a0, b) in zip(self.actors, self.slices)]
        t1 = time.perf_counter()
        results = self._gather(futures)
        out = np.concatenate([r["stress"] for r in results])
        self._take(results)
        stress.from_numpy(out)
        t2 = time.perf_counter()
        t = self._t
        t["updates"] += 1
        t["send_s"] += t1 - t0
        t["wait_s"] += self._waited
        t["gather_s"] += t2 - t1 - self._waited
        t["compute_max_s"] += max(r["compute_s"] for r in results)
        t["update_s"] += t2 - t0

    def timings(self) -> dict:
        """Totals of the exchange (s) and their means per macro step; ``overhead`` is an update's
        wall time less the slowest worker's compute time (communication and waiting on the driver)."""
        t, n = dict(self._t), max(self._t["updates"], 1)
        t["overhead_s"] = t["update_s"] - t["compute_max_s"]
        for k in ("send_s", "wait_s", "gather_s", "compute_max_s", "update_s", "overhead_s"):
            t[k[:-2] + "_per_step_s"] = t[k] / n
        return t

    def info(self) -> dict:
        """The partition for ``run.json``: workers, slices with placement and estimate, actors."""
        return {"workers": len(self.slices), "slices": [{**p, **w} for p, w in zip(self.plan.summary(), self.workers)],
                "timings": self.timings()}

    def initial_stress(self) -> np.ndarray:
        return self._stress0.copy()

    def snapshot(self) -> dict:
        """Every slice's state gathered into the single-process ``RVEBatch.snapshot`` format."""
        parts = self._gather([a.snapshot.remote() for a in self.actors])
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def restore(self, state: dict) -> None:
        """Restore a snapshot of any partition (or of one process): each actor gets its slice."""
        self._take(self._gather([a.restore.remote({k: v[a0:b] for k, v in state.items()})
                                 for a, (a0, b) in zip(self.actors, self.slices)]))
        self._stress0 = state["rve_stress0"].copy()

    def save_parts(self, folder: Path, stem: str) -> dict:
        """Every actor writes its slice to ``folder/cells/STEM.wK.npz`` (the run folder must be on a
        file system the workers share with the driver); the index for the checkpoint file."""
        (Path(folder) / "cells").mkdir(parents=True, exist_ok=True)
        names = [f"cells/{stem}.w{i}.npz" for i in range(len(self.actors))]
        self._gather([a.save_part.remote(str((Path(folder) / n).resolve())) for a, n in zip(self.actors, names)])
        return {"parts_range": np.array(self.slices, dtype=np.int64), "parts_file": np.array(names)}

    def load_parts(self, index: dict, folder: Path) -> None:
        """Each actor reads its points from the slice files of any partition's checkpoint."""
        where = str(Path(folder).resolve())
        done = self._gather([a.load_part.remote(index, where, a0, b) for a, (a0, b) in zip(self.actors, self.slices)])
        self._take(done)
        self._stress0 = np.concatenate([r["stress0"] for r in done])

    def wave_modulus(self) -> float:
        """Largest Voigt constrained modulus over every slice's cells (Pa)."""
        return float(max(self._gather([a.wave_modulus.remote() for a in self.actors])))

    def close(self) -> None:
        """End the actors (their cells are lost; a checkpoint keeps them), after each has released
        Taichi (which writes the kernel cache the next run's workers load); dead ones are skipped."""
        import ray

        closing = [a.close.remote() for a in self.actors]
        ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        key = "GPU" if "num_gpus" in self.plan.options[0] else "CPU"
        held = sum(o.get("num_gpus", o.get("num_cpus", 0.0)) for o in self.plan.options)
        target = ray.available_resources().get(key, 0.0) + held - 1e-6
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        _await_available(ray, key, target)


def _await_available(ray, key: str, target: float, timeout_s: float = 10.0) -> None:
    """Wait (up to ``timeout_s``) until Ray reports ``target`` of resource ``key`` available: it
    releases a killed actor's CPUs or GPUs asynchronously, and a batch built right after the close
    would be refused for want of them."""
    end = time.monotonic() + timeout_s
    while ray.available_resources().get(key, 0.0) < target and time.monotonic() < end:
        time.sleep(0.05)
