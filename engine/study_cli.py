"""``engine study``: run a study file's stages in dependency order, then write its report."""
from __future__ import annotations

from pathlib import Path

import click

from engine.cli_common import arch_option, fail, fp_option


@click.command("study")
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Study folder: one folder per stage, stages/, logs/, report.md.")
@click.option("--dry-run", is_flag=True, help="Print the plan, what would run and its estimated cost; run nothing.")
@click.option("--executor", type=click.Choice(["serial", "ray"]), default="serial", show_default=True,
              help="serial: one stage after the other in this process; ray: independent stages as Ray tasks.")
@click.option("--workers", type=int, default=None, help="Ray: most stages at once on this machine (default: cores).")
@click.option("--address", default=None, metavar="HOST:PORT", help="Ray: a running cluster to use instead of a local one.")
@arch_option
@fp_option
def study(study_file, out, dry_run, executor, workers, address, arch, fp):
    """Run the study STUDY_FILE (TOML, docs/study.md): FEM-DEM training runs, calibrations, test runs
    with every surrogate, comparisons and report.md. Stages that are done and current are skipped."""
    from engine.case import CaseError
    from engine.study.plan import describe, make_plan
    from engine.study.spec import load_study

    if workers is not None and workers < 1:
        fail(f"--workers {workers}: must be >= 1")
    if (workers or address) and executor != "ray":
        fail("--workers and --address are for --executor ray")
    try:
        spec = load_study(study_file)
        stages = make_plan(spec)
    except CaseError as exc:
        fail(str(exc))
    for line in describe(stages, out):
        click.echo(line)
    if dry_run:
        return
    from engine.study.executor import run_plan
    from engine.study.report import write_report

    try:
        status = run_plan(stages, out, arch=arch, fp=fp, executor=executor, workers=workers, address=address)
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume", code=130)
    report = write_report(spec, stages, out)
    bad = {k: v for k, v in status.items() if v in ("failed", "blocked")}
    click.echo(f"report: {report}")
    if bad:
        fail(f"{len(bad)} stage(s) did not finish: " + ", ".join(f"{k} ({v})" for k, v in bad.items()), code=3)
