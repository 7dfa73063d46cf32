"""Shared test helpers: the CLI in this process, in a subprocess, a fresh Taichi runtime, and a check that a
PNG is a picture."""
import subprocess
import sys

import numpy as np


class CliResult:
    """Exit code, stdout and stderr of one CLI call (the shape of ``subprocess.CompletedProcess``)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def engine(*args) -> CliResult:
    """``engine ARGS`` in this process through click's runner (no interpreter and Taichi start-up)."""
    from click.testing import CliRunner

    from engine.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args])
    return CliResult(r.exit_code, r.stdout, r.stderr)


def engine_process(*args) -> subprocess.CompletedProcess:
    """``engine ARGS`` as its own process: for exit codes of crashes and what a real stderr shows."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True)


def assert_plot_png(path, min_size=(300, 200)):
    """A real picture: at least ``min_size`` pixels, many colours, a share of non-white pixels."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= min_size[0] and im.height >= min_size[1]
        img = np.asarray(im.convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10          # axes, text, curves: not blank
    assert (img.sum(axis=2) < 600).mean() > 0.005                    # dark pixels: lines and labels drawn


def fresh_runtime(request, fp=None):
    """Start Taichi again with the session's ``--arch`` and ``--fp`` (or ``fp``); returns kernels.runtime.

    Why a test restarts it before building a second copy of an object: a kernel's key in the offline
    cache (tests/conftest.py) includes the ids of the fields it touches, so a second copy built in the
    same runtime compiles every kernel again (the calibration's differentiable step: 10 to 20 s on
    two cores). The reset writes the kernels compiled so far to the cache, and a copy built first in
    the new runtime has the same field ids as the first one: its kernels load from the cache in
    well under a second."""
    from kernels import runtime

    runtime.init(arch=request.config.getoption("--arch"),
                 fp=runtime.resolve_fp(request.config.getoption("--arch"), fp or request.config.getoption("--fp")))
    return runtime
