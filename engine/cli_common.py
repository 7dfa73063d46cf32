"""What every computing command shares: one-line user errors, ``--arch`` / ``--fp``, starting Taichi.

User errors print ``error: ...`` on stderr and exit with status 2, without a traceback.
"""
from __future__ import annotations

import sys

import click

from kernels import runtime

arch_option = click.option("--arch", type=click.Choice(runtime.ARCHS), default="cpu", show_default=True,
                           help="Taichi backend (auto: a GPU if there is one).")
fp_option = click.option("--fp", "--dtype", "fp", type=click.Choice(runtime.FP_CHOICES), default="auto",
                         show_default=True, help="Real precision (auto: f64 on the CPU, f32 on a GPU).")


def fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def start_backend(arch: str, fp: str) -> str:
    """Start Taichi on ``arch`` with ``fp`` (a combination it cannot run is refused in one line).

    Returns the backend used (``x64``, ``cuda``, ``vulkan``).
    """
    try:
        return runtime.init(arch=arch, fp=fp)
    except runtime.BackendError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - backend missing on this machine
        fail(f"--arch {arch}: Taichi could not start this backend ({exc})")
