"""Runs a study's stages in dependency order: serially in this process, or as Ray tasks.

A stage runs when every stage it depends on is done; one that failed stops its dependants
(``blocked``, naming it) and lets independent stages finish. With ``executor="ray"`` every
ready stage is a Ray task in its own worker process (one CPU, or one GPU on a GPU arch; a
fresh process per task, so each initialises Taichi itself): locally (``ray.init()``, at most
``workers`` at once) or on the cluster at ``address``. Both give the same files.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from engine.study import jobs
from engine.study.cost import human
from engine.study.plan import Stage, state


def run_plan(stages: list[Stage], out: Path, arch: str = "cpu", fp: str = "auto", executor: str = "serial",
             workers: int | None = None, address: str | None = None) -> dict:
    """Run the stages that are not current; returns name -> status (done, skipped, failed, blocked)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    status = {s.name: "skipped" for s in stages if state(s, out) == "current"}
    todo = [s for s in stages if s.name not in status]
    if executor == "ray":
        _ray_loop(todo, status, out, arch, fp, workers, address)
    else:
        for s in todo:
            if _blocked(s, status):
                continue
            _report_start(s, len(status), len(stages))
            _finish(s, jobs.execute(s, str(out), arch, fp, progress=sys.stderr.isatty()), status)
    return status


def _blocked(stage: Stage, status: dict) -> bool:
    """Mark ``stage`` blocked when a dependency failed or is blocked; True then."""
    bad = [d for d in stage.deps if status.get(d) in ("failed", "blocked")]
    if bad:
        status[stage.name] = "blocked"
        click.echo(f"blocked {stage.name}: needs {bad[0]}, which {status[bad[0]]}", err=True)
    return bool(bad)


def _ready(stage: Stage, status: dict) -> bool:
    return all(status.get(d) in ("done", "skipped") for d in stage.deps)


def _report_start(stage: Stage, done: int, total: int) -> None:
    click.echo(f"[{done + 1}/{total}] {stage.name}: {stage.summary} (~{human(stage.estimate_s)})", err=True)


def _finish(stage: Stage, info: dict, status: dict) -> None:
    status[stage.name] = info["status"]
    tail = f": {info['message']}" if info.get("message") else ""
    click.echo(f"{info['status']:>6s} {stage.name} in {human(info.get('wall_s', 0.0))}{tail}", err=True)


def _ray_loop(todo: list[Stage], status: dict, out: Path, arch: str, fp: str, workers, address) -> None:
    ray = _start_ray(workers, address)
    gpu = arch in ("cuda", "vulkan")
    task = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_calls=1)(jobs.execute)
    pending, waiting = {}, list(todo)
    try:
        while waiting or pending:
            for s in list(waiting):
                if _blocked(s, status):
                    waiting.remove(s)
                elif _ready(s, status):
                    waiting.remove(s)
                    _report_start(s, len(status) + len(pending), len(status) + len(pending) + len(waiting) + 1)
                    pending[task.remote(s, str(out), arch, fp)] = s
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            s = pending.pop(ready[0])
            _finish(s, _result(ray, ready[0], s), status)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def _result(ray, ref, stage: Stage) -> dict:
    """A task's ``stage.json``, or a failure naming the stage when its worker died."""
    t0 = time.perf_counter()
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"status": "failed", "message": f"the Ray worker of {stage.name} failed: {first}",
                "wall_s": time.perf_counter() - t0}


def _start_ray(workers: int | None, address: str | None):
    try:
        import ray  # noqa: F401
    except ImportError:
        raise click.ClickException('--executor ray needs Ray: pip install -e ".[cluster]"') from None
    from kernels.partition import connect
    from kernels.placement import PlacementError

    env = {"env_vars": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))}}
    try:
        return connect(address, num_cpus=workers or os.cpu_count(), runtime_env=env)
    except PlacementError as exc:
        raise click.ClickException(str(exc)) from None
