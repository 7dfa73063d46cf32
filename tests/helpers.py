"""Shared test helpers: the CLI in this process, in a subprocess, and a check that a PNG is a picture."""
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
