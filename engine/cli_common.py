"""What every computing command shares: one-line user errors, ``--arch`` / ``--fp``, starting Taichi.

User errors print ``error: ...`` on stderr and exit with status 2, without a traceback.
"""
from __future__ import annotations

import sys

import click

from kernels import registry, runtime

arch_option = click.option("--arch", type=click.Choice(runtime.ARCHS), default="cpu", show_default=True,
                           help="Taichi backend (auto: a GPU if there is one).")
fp_option = click.option("--fp", "--dtype", "fp", type=click.Choice(runtime.FP_CHOICES), default="auto",
                         show_default=True, help="Real precision (auto: f64 on the CPU, f32 on a GPU).")


def fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def start_backend(arch: str, fp: str, models=()) -> str:
    """Start Taichi on ``arch`` with ``fp``; refuse at once a backend that cannot run ``models``.

    Returns the backend used (``x64``, ``cuda``, ``vulkan``).
    """
    try:
        used = runtime.init(arch=arch, fp=fp)
    except Exception as exc:  # noqa: BLE001 - backend missing on this machine
        fail(f"--arch {arch}: Taichi could not start this backend ({exc})")
    try:
        for model in models:
            registry.check_backend(model)
    except runtime.BackendError as exc:
        fail(str(exc))
    return used
