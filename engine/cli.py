"""Command line interface: ``engine run``, ``engine element``, ``engine rve`` ...

User errors (bad case files, bad flags) print one line and exit with code 2, without a traceback.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from engine.runtime import ARCHS, PRECISIONS


def fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(package_name="granular-engine")
@click.option("-v", "--verbose", is_flag=True, help="Log set-up details.")
def main(verbose):
    """GPU multiscale engine for granular media."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("case_file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a case key, e.g. --set run.steps=20 (repeatable; values are TOML).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default runs/<case>-<time>); never overwritten.")
@click.option("--arch", type=click.Choice(ARCHS), default="cpu", show_default=True, help="Taichi backend.")
@click.option("--fp", type=click.Choice(PRECISIONS), default="f64", show_default=True, help="Real precision.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Continue the run in this folder from its latest checkpoint (raise run.steps with --set).")
def run(case_file, overrides, out, arch, fp, progress, resume_dir):
    """Run the boundary value problem of CASE_FILE (TOML), or continue one with --resume RUN_DIR."""
    from engine import runtime
    from engine.case import CaseError, load_case
    from engine.driver import Diverged, default_run_dir, load_run_case
    from engine.driver import run as run_case

    if (case_file is None) == (resume_dir is None):
        fail("give a CASE_FILE, or --resume RUN_DIR (not both)")
    try:
        case = load_run_case(resume_dir, list(overrides)) if resume_dir else load_case(case_file, list(overrides))
    except CaseError as exc:
        fail(str(exc))
    if resume_dir and out and out != resume_dir:
        fail("--out cannot be combined with --resume (a run continues in its own folder)")
    out = resume_dir or out or default_run_dir(case)
    try:
        used = runtime.init(arch=arch, fp=fp)
    except Exception as exc:  # noqa: BLE001 - backend missing on this machine
        fail(f"--arch {arch}: Taichi could not start this backend ({exc})")
    try:
        info = run_case(case, out, progress=progress, arch=used, resume=resume_dir is not None)
    except CaseError as exc:
        if not resume_dir and out.exists() and not any(out.iterdir()):
            out.rmdir()
        fail(str(exc))
    except FileExistsError as exc:
        fail(str(exc))
    except Diverged as exc:
        fail(str(exc), code=3)
    except KeyboardInterrupt:
        fail(f"interrupted; outputs so far are in {out}", code=130)
    t = info["timings"]
    click.echo(f"{case.name}: {info['steps_done']} steps in {t['total_s']:.1f} s "
               f"({t['steps_per_s']:.0f} steps/s) -> {out}")


@main.group()
def dataset():
    """Gauss-point datasets (dataset.h5 of a run, or .npz)."""


@dataset.command("info")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plot", "plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG of a few Gauss-point histories (default FILE stem + _histories.png).")
@click.option("--points", default=6, show_default=True, help="Number of Gauss points plotted.")
def dataset_info(file, plot, points):
    """Shapes and ranges of a dataset, and a plot of a few histories."""
    from engine.dataset import plot_histories, read_dataset, summary

    try:
        data = read_dataset(file)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    click.echo(summary(data))
    out = plot or file.with_name(file.stem + "_histories.png")
    plot_histories(data, out, points)
    click.echo(f"plot: {out}")


def _register_optional():
    """Commands contributed by other modules (element tests, RVEs, ...)."""
    import importlib

    for module, name in (("engine.element_cli", "element"), ("engine.rve_cli", "rve")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        cmd = getattr(mod, name, None)
        if cmd is not None and name not in main.commands:
            main.add_command(cmd)


_register_optional()

if __name__ == "__main__":
    main()
