"""Command line interface: ``engine run``, ``engine element``, ``engine rve`` ...

User errors (bad case files, bad flags) print one line and exit with code 2, without a traceback.
"""
from __future__ import annotations

import logging
from pathlib import Path

import click

from engine.cli_common import arch_option, fail, fp_option, start_backend


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
@arch_option
@fp_option
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("--gui", is_flag=True, help="Live preview window (Taichi GGUI; needs a display and Vulkan).")
@click.option("--field", default="q", show_default=True, help="Field shown by --gui (f/g keys switch).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Continue the run in this folder from its latest checkpoint (raise run.steps with --set).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray actors sharing the DEM cells (overrides material.dem.workers; 1: no Ray).")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Ray cluster of the DEM workers (default: a local one is started).")
@click.option("--dry-run", is_flag=True,
              help="Print the stable step, mass scaling, strain per step, DEM steps, expected cost and "
                   "whether the run is quasi-static (from a few timed steps); write nothing.")
def run(case_file, overrides, out, arch, fp, progress, gui, field, resume_dir, workers, address, dry_run):
    """Run the boundary value problem of CASE_FILE (TOML), or continue one with --resume RUN_DIR."""
    from engine.case import CaseError, load_case
    from engine.driver import Diverged, default_run_dir, load_run_case
    from engine.driver import run as run_case

    if (case_file is None) == (resume_dir is None):
        fail("give a CASE_FILE, or --resume RUN_DIR (not both)")
    overrides = list(overrides) + ([f"material.workers={workers}"] if workers is not None else [])
    try:
        case = load_run_case(resume_dir, list(overrides)) if resume_dir else load_case(case_file, list(overrides))
    except CaseError as exc:
        fail(str(exc))
    if resume_dir and out and out != resume_dir:
        fail("--out cannot be combined with --resume (a run continues in its own folder)")
    if dry_run:
        _dry_run(case, arch, fp)
        return
    out = resume_dir or out or default_run_dir(case)
    used = start_backend(arch, fp)
    try:
        info = run_case(case, out, progress=progress, arch=used, resume=resume_dir is not None,
                        gui=field if gui else None, cluster=address)
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
               f"({t['steps_per_s']:.3g} steps/s) -> {out}")


def _dry_run(case, arch, fp) -> None:
    """``engine run --dry-run``: the plan of ``case`` (``engine.dryrun``); nothing is written."""
    from engine.case import CaseError
    from engine.dryrun import plan

    start_backend(arch, fp)
    try:
        plan(case, echo=click.echo)
    except CaseError as exc:
        fail(str(exc))


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


def _run_folder(path):
    from engine.views import RunError, open_run

    try:
        return open_run(path)
    except RunError as exc:
        fail(str(exc))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--field", default="q", show_default=True, help="Field to colour by (see docs/outputs.md).")
@click.option("--frame", default="-1", show_default=True,
              help="Frame index (negative from the end), or 'all' for an animation.")
@click.option("--frames", "frames_opt", default=None, help="Alias of --frame ('all' for an animation).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG for one frame; .gif or .mp4 for --frames all.")
@click.option("--warp", default=1.0, show_default=True, help="Displacement magnification of the mesh.")
@click.option("--size", default="1000x700", show_default=True, help="Picture size WIDTHxHEIGHT in pixels.")
def show(run_dir, field, frame, frames_opt, out, warp, size):
    """Render a frame of RUN_DIR off-screen (deformed mesh coloured by a field)."""
    from engine.views import FIELDS, RunError, animate, render

    run = _run_folder(run_dir)
    if field not in FIELDS:
        fail(f"--field {field!r} is not a field (allowed: {', '.join(FIELDS)})")
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        fail(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 1000x700")
    which = frames_opt or frame
    try:
        if which == "all":
            animate(run, field, out, warp=warp, size=(w, h))
        else:
            try:
                index = int(which)
            except ValueError:
                fail(f"--frame {which!r}: expected an integer or 'all'")
            render(run, field, index, out, warp=warp, size=(w, h))
    except RunError as exc:
        fail(str(exc))
    click.echo(str(out))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the PNGs (default RUN_DIR/plots).")
@click.option("--x", "x", default=None, help="Abscissa column (default: the case's second curve).")
def plot(run_dir, out, x):
    """PNG plots of RUN_DIR/curves.csv."""
    from engine.views import RunError, plot_curves

    run = _run_folder(run_dir)
    try:
        for path in plot_curves(run, out or run.path / "plots", x):
            click.echo(str(path))
    except RunError as exc:
        fail(str(exc))


@main.command("compare")
@click.argument("ref_run", type=click.Path(file_okay=False, path_type=Path))
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--pair-by", "pair_by", default="time", show_default=True,
              help="Pair the runs' rows and frames by time, step or a curve column (e.g. axial_strain).")
@click.option("--field", default="eps_s", show_default=True, help="Field of the side-by-side pictures.")
@click.option("--points", default=None, help="Gauss points for the stress histories, e.g. 0,10,200.")
@click.option("--component", default="yy", show_default=True,
              type=click.Choice(["xx", "yy", "zz", "xy", "yz", "xz"]), help="Stress component of the histories.")
def compare_cmd(ref_run, runs, out, pair_by, field, points, component):
    """Compare RUNS against the reference REF_RUN (same case): fields, curves, errors, Gauss points."""
    from engine.compare import compare, describe
    from engine.views import FIELDS, RunError

    if field not in FIELDS:
        fail(f"--field {field!r} is not a field (allowed: {', '.join(FIELDS)})")
    try:
        pts = [int(p) for p in points.split(",")] if points else None
    except ValueError:
        fail(f"--points {points!r}: expected integers separated by commas")
    try:
        result = compare([ref_run, *runs], out, field=field, points=pts, component=component, pair_by=pair_by)
    except RunError as exc:
        fail(str(exc))
    click.echo((out / "errors.md").read_text())
    click.echo(describe(result))
    if "overlap" in result:
        click.echo("loading-space overlap: " + ", ".join(f"{k} {v:.3f}" for k, v in result["overlap"].items()))
    click.echo(f"written to {out} (comparison.json: the pairing and every number)")


@main.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["vtu", "vtkhdf", "xdmf"]), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default RUN_DIR/export-FORMAT).")
def export_cmd(run_dir, fmt, out):
    """Convert the VTK frames of RUN_DIR to another format (meshio / HDF5)."""
    from engine.export import export

    run = _run_folder(run_dir)
    if not run.frames:
        fail(f"{run_dir}: no VTK frames to export (output.vtk was false?)")
    files = export(run, fmt, out or run.path / f"export-{fmt}")
    click.echo(f"{len(files)} files written to {files[0].parent}")


def _register_optional():
    """Commands contributed by other modules (element tests, RVEs, ...)."""
    import importlib

    for module, name in (("engine.element_cli", "element"), ("engine.rve_cli", "rve"),
                         ("engine.calibrate_cli", "calibrate"), ("engine.study_cli", "study")):
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
