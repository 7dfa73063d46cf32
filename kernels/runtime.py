"""The one place where Taichi is initialised.

The CLI and the test fixture both call :func:`init`. Kernel classes read the precision
from :func:`real` at construction and never at import time.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

ARCHS = ("cpu", "cuda", "vulkan", "auto")
PRECISIONS = ("f32", "f64")
FP_CHOICES = ("auto",) + PRECISIONS    # auto: f64 on the CPU, f32 on a GPU

_state = {"arch": None, "fp": None, "fast_math": True}


class BackendError(ValueError):
    """A backend / precision combination that cannot run the requested kernels."""


# Taichi 1.7.4 on Vulkan: no 64-bit exp/log/pow (SPIR-V's GLSL.std.450 set), and an f64 field's
# writes land in the 32-bit field declared after it (``fill(0.1)`` of an f64 field of two entries
# set an i32 neighbour to 0x9999999a), so f64 is refused there outright.
VULKAN_F64 = ("--arch vulkan --fp f64 is not supported: Taichi's Vulkan backend has no 64-bit exp/log/pow "
              "and misplaces f64 fields; use --fp f32 on vulkan, or --arch cpu|cuda for f64")


def resolve_fp(arch: str, fp: str) -> str:
    """``fp`` with ``auto`` resolved: f64 on the CPU, f32 on a GPU backend (cuda, vulkan, auto)."""
    if fp != "auto":
        return fp
    return "f64" if arch == "cpu" else "f32"


def init(arch: str = "cpu", fp: str = "f64", debug: bool = False, **kwargs) -> str:
    """Initialise Taichi once for this process.

    Parameters
    ----------
    arch : one of ``cpu``, ``cuda``, ``vulkan``, ``auto``.
    fp : default real precision, ``f64``, ``f32`` or ``auto`` (see :func:`resolve_fp`).

    Returns the name of the backend actually used (``auto`` may fall back to the CPU; ``cuda``
    and ``vulkan`` without their device raise :class:`BackendError`).
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if fp not in FP_CHOICES:
        raise ValueError(f"fp must be one of {', '.join(FP_CHOICES)}, got {fp!r}")
    fp = resolve_fp(arch, fp)
    import taichi as ti

    target = {"cpu": ti.cpu, "cuda": ti.cuda, "vulkan": ti.vulkan, "auto": ti.gpu}[arch]
    ti.reset()
    _state.update(arch=None, fp=None, fast_math=True)    # nothing is running until this init succeeds
    if "TI_OFFLINE_CACHE" not in os.environ:          # the environment may switch the cache off (tests)
        kwargs.setdefault("offline_cache", True)
    if arch == "cpu":
        # fast math lets LLVM reassociate sums in a serial loop (SERIAL_SLOTS),
        # so two copies of a cell would differ by round-off; off, a batch equals each cell alone
        kwargs.setdefault("fast_math", False)
    ti.init(arch=target, default_fp=ti.f64 if fp == "f64" else ti.f32,
            default_ip=ti.i32, debug=debug, log_level=ti.WARN, **kwargs)
    used = str(ti.lang.impl.current_cfg().arch).split(".")[-1]
    if arch in ("cuda", "vulkan") and used != arch:      # Taichi falls back to the CPU with a warning
        ti.reset()
        raise BackendError(f"--arch {arch}: no {arch} device on this machine (Taichi could only start "
                           f"{used}); use --arch cpu, or --arch auto for a GPU when there is one")
    if used == "vulkan" and fp == "f64":
        ti.reset()
        raise BackendError(VULKAN_F64)
    _state.update(arch=used, fp=fp, fast_math=kwargs.get("fast_math", True))
    return used


def real():
    """The Taichi real type chosen at :func:`init` (``ti.f64`` or ``ti.f32``)."""
    if _state["fp"] is None:
        raise RuntimeError("kernels.runtime.init() must be called before building kernels")
    import taichi as ti

    return ti.f64 if _state["fp"] == "f64" else ti.f32


def np_real():
    """The numpy dtype matching :func:`real`."""
    import numpy as np

    return np.float64 if _state["fp"] == "f64" else np.float32


def arch_name() -> str | None:
    """Backend in use (``x64``, ``cuda``, ...), or None before :func:`init`."""
    return _state["arch"]


def reset() -> None:
    """Release Taichi's runtime (fields, kernels)."""
    import taichi as ti

    ti.reset()
    _state.update(arch=None, fp=None, fast_math=True)


def precision() -> str | None:
    """Default real precision chosen at :func:`init` (``"f32"`` or ``"f64"``), or None before it."""
    return _state["fp"]



def exact_serial_loops() -> bool:
    """Whether a serialized loop gives the same bits as the parallel one: on the CPU with fast math
    off (with it, LLVM may reassociate the sums of a serial loop)."""
    return _state["arch"] == "x64" and not _state["fast_math"]


# On the CPU a DEM batch of at most this many particle slots runs its particle-parallel loops on one
# thread: a parallel loop costs a thread-pool round trip (measured 5-60 us per loop on the 2-core
# VM), more than the work of a small batch (about 0.1 us per particle-step).
SERIAL_SLOTS = 4096


def dem_cell_major(n_cells: int, max_particles: int) -> bool:
    """Whether a batch of DEM cells steps cell-major (one thread per cell, all of a call's steps;
    ``kernels.dem_cell_major``) rather than particle-parallel (one thread per particle and pass;
    the GPU shape).

    Cell-major where serial loops are exact (:func:`exact_serial_loops`: the CPU without fast
    math) and the batch either has a cell for every thread or is small enough to run on one
    thread anyway (``SERIAL_SLOTS``); a few large cells on more threads stay particle-parallel.
    On the CPU the particle-parallel step is memory-bound (every pass streams the whole batch
    through the caches), the cell-major one keeps a cell in one core's cache for all its steps:
    64 x 1000 disks ran 4.6 times as fast, and as fast per thread as one cell (BENCHMARKS.md).
    """
    if not exact_serial_loops():
        return False
    import taichi as ti

    threads = ti.lang.impl.current_cfg().cpu_max_num_threads
    return n_cells >= threads or n_cells * max_particles <= SERIAL_SLOTS
