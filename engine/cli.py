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
@click.argument("case_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a case key, e.g. --set run.steps=20 (repeatable; values are TOML).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default runs/<case>-<time>); never overwritten.")
@click.option("--arch", type=click.Choice(ARCHS), default="cpu", show_default=True, help="Taichi backend.")
@click.option("--fp", type=click.Choice(PRECISIONS), default="f64", show_default=True, help="Real precision.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def run(case_file, overrides, out, arch, fp, progress):
    """Run the boundary value problem of CASE_FILE (TOML)."""
    from engine import runtime
    from engine.case import CaseError, load_case
    from engine.driver import Diverged, default_run_dir
    from engine.driver import run as run_case

    try:
        case = load_case(case_file, list(overrides))
    except CaseError as exc:
        fail(str(exc))
    out = out or default_run_dir(case)
    try:
        used = runtime.init(arch=arch, fp=fp)
    except Exception as exc:  # noqa: BLE001 - backend missing on this machine
        fail(f"--arch {arch}: Taichi could not start this backend ({exc})")
    try:
        info = run_case(case, out, progress=progress, arch=used)
    except CaseError as exc:
        if out.exists() and not any(out.iterdir()):
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
