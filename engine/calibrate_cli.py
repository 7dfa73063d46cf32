"""``engine calibrate``: fit a constitutive surrogate to Gauss-point histories (calibrate/).

:func:`run_calibration` is the in-process entry point (a study runner calls it with a
``calibrate.job.Job``); the command builds the job from its options, or from ``OUT/calibration.json``
with ``--resume OUT``.
"""
from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from engine.cli_common import arch_option, fail, fp_option, start_backend
from kernels import registry

RESUME_KEEPS = ("resume", "progress", "stop_after", "arch", "fp", "data_path", "out")


def run_calibration(job, resume: bool = False, progress: bool = False, stop_after: int | None = None) -> dict:
    """Run ``job`` (a ``calibrate.job.Job``) in this process, or continue it from ``job.out`` with
    ``resume``; the Taichi runtime must be started. Returns the summary written to summary.json
    (``failure`` is one line or None). ValueError / OSError for bad data or a data file that is not
    the one the calibration started with."""
    from calibrate.job import execute, file_digest, load_job
    from engine.dataset import read_dataset

    digest = file_digest(job.data)
    if resume:
        stored, want = load_job(job.out)
        if digest != want:
            raise ValueError(f"--data {job.data}: not the data the calibration in {job.out} started with "
                             f"({stored.data}, sha256 {want[:12]}...)")
        job = stored
    raw = read_dataset(job.data)
    return execute(job, raw, resume=resume, progress=progress, stop_after=stop_after, digest=digest)


def _floats(text: str | None, option: str, n: tuple) -> tuple | None:
    if text is None:
        return None
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        fail(f"{option} {text!r}: expected {' or '.join(map(str, n))} comma-separated numbers")
    if len(values) not in n:
        fail(f"{option} {text!r}: expected {' or '.join(map(str, n))} comma-separated numbers, got {len(values)}")
    return values


@click.command("calibrate")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="dataset.h5 of a run, or .npz with strain, stress (n_points, n_steps, 3, 3) and p0.")
@click.option("--model", type=click.Choice(registry.names(differentiable=True)), default="csuh", show_default=True)
@click.option("--epochs", type=int, default=100, show_default=True, help="Epochs (CMA-ES: generations).")
@click.option("--lr", type=float, default=0.01, show_default=True, help="Adam learning rate on the variables.")
@click.option("--lr-final", type=float, default=None,
              help="Learning rate at the last epoch (exponential decay from --lr); default: constant --lr.")
@click.option("--delta-r", type=float, default=None, help="Soft gate width (default 0.03; 0 disables).")
@click.option("--lode", type=click.Choice(["exp", "two-anchor", "ts"]), default=None,
              help="CSUH Lode-angle treatment (default exp).")
@click.option("--scheme", type=click.Choice(["1", "2", "3"]), default=None,
              help="Paper scheme: 1 = ts without gate, 2 = ts with gate, 3 = exp with gate (sets --lode, --delta-r).")
@click.option("--parametrisation", type=click.Choice(["bounded", "paper"]), default="bounded", show_default=True,
              help="bounded: each parameter a sigmoid between its Table 1 bounds (cannot leave them); "
                   "paper: phi = phi0 x W with the bound penalty of Eq. 18.")
@click.option("--gamma-max", type=float, default=0.1, show_default=True, help="Penalty weight at the first epoch.")
@click.option("--gamma-min", type=float, default=0.01, show_default=True, help="Penalty weight at the last epoch.")
@click.option("--penalty", type=click.Choice(["linear", "squared"]), default="linear", show_default=True)
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="Train,validation,test fractions of points.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the point shuffle and of --sample.")
@click.option("--init", default="original", show_default=True,
              help="Initial parameters: original, optimised-2d, optimised-3d, optimised (IME), or a params TOML.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Change one initial parameter (repeatable).")
@click.option("--optimizer", type=click.Choice(["adam", "lbfgs", "cmaes"]), default="adam", show_default=True,
              help="adam (the paper's), lbfgs (same gradients, quasi-Newton; --epochs = evaluations), "
                   "cmaes (derivative-free baseline).")
@click.option("--batch-points", type=int, default=None, help="Mini-batch size in points (default: all).")
@click.option("--stride", type=int, default=1, show_default=True, help="Use every k-th step in the loss.")
@click.option("--points", "max_points", type=int, default=None, help="Use only the first N (selected) points.")
@click.option("--max-eps-s", type=float, default=None,
              help="Keep points whose largest deviatoric strain eps_s over the history is <= this (-).")
@click.option("--p-range", default=None, metavar="LO,HI", help="Keep points whose p stays in [LO, HI] (Pa).")
@click.option("--region", default=None, metavar="XMIN,XMAX,YMIN,YMAX[,ZMIN,ZMAX]",
              help="Keep points inside this box (m; needs Gauss-point coordinates in the dataset).")
@click.option("--point-stride", type=int, default=1, show_default=True, help="Keep every k-th selected point.")
@click.option("--sample", type=int, default=None, help="Keep a random subset of N selected points (--seed).")
@click.option("--point-weights", default="uniform", show_default=True,
              help="uniform (Eq. 17), equal (each point's squared stresses normalised), or a .npy of one "
                   "weight per dataset point.")
@click.option("--component-weights", default=None, metavar="W,...",
              help="Weights of the stress components: 2D 11,22,12; 3D 11,22,33,23,13,12 (default all 1).")
@click.option("--chunk-points", type=int, default=256, show_default=True, help="Points per Taichi batch (memory).")
@click.option("--checkpoint-every", type=int, default=1, show_default=True, help="Epochs between checkpoints.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="OUT",
              help="Continue the calibration in OUT from its checkpoint, with its stored settings.")
@click.option("--stop-after", type=int, default=None,
              help="Stop after this many epochs in total, leaving a checkpoint (continue with --resume).")
@arch_option
@fp_option
@click.option("--progress/--no-progress", default=True)
@click.pass_context
def calibrate(ctx, **kw):
    """Calibrate MODEL's parameters on recorded stress-strain histories (Adam, L-BFGS or CMA-ES)."""
    if kw["resume"] is not None:
        job = _resume_job(ctx, kw)
    else:
        job = _new_job(kw)
    _check_imports(job.settings.optimizer)
    start_backend(kw["arch"], kw["fp"])
    try:
        result = run_calibration(job, resume=kw["resume"] is not None, progress=kw["progress"],
                                 stop_after=kw["stop_after"])
    except (OSError, ValueError) as exc:
        fail(" ".join(str(exc).split()))
    _report(result, Path(job.out))


def _resume_job(ctx, kw):
    from calibrate.job import load_job

    given = [name for name in kw if name not in RESUME_KEEPS
             and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    if given:
        opt = "--" + given[0].replace("_", "-").replace("max-points", "points").replace("sets", "set")
        fail(f"{opt}: a resumed calibration keeps the settings stored in {kw['resume']}; "
             "give only --resume, --data, --stop-after, --progress, --arch, --fp")
    if kw["out"] is not None and Path(kw["out"]) != Path(kw["resume"]):
        fail(f"--out {kw['out']}: a resumed calibration writes into its own folder {kw['resume']}")
    try:
        job, _ = load_job(kw["resume"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"--resume {kw['resume']}: {exc}")
    if kw["data_path"] is not None:
        job.data = str(kw["data_path"])
    return job


def _check_imports(optimizer: str) -> None:
    from importlib.util import find_spec

    if find_spec("torch") is None:
        fail('engine calibrate needs PyTorch: pip install torch==2.13.0 -e ".[calibrate]"')
    if optimizer == "cmaes" and find_spec("cma") is None:
        fail('--optimizer cmaes needs the cma package: pip install -e ".[calibrate]"')


def _options(schema, kw) -> dict:
    options = {}
    has_lode = "lode" in schema.default_options()
    if has_lode:
        options["lode"] = kw["lode"] or "exp"
    elif kw["lode"]:
        fail("--lode applies to --model csuh only")
    options["delta_r"] = 0.03 if kw["delta_r"] is None else kw["delta_r"]
    if kw["scheme"]:
        if not has_lode:
            fail("--scheme applies to --model csuh only")
        options.update({"1": {"lode": "ts", "delta_r": 0.0}, "2": {"lode": "ts", "delta_r": 0.03},
                        "3": {"lode": "exp", "delta_r": 0.03}}[kw["scheme"]])
    return options


def _start(schema, model: str, init: str, sets) -> dict:
    if init in schema.presets:
        start = dict(schema.presets[init])
    elif Path(init).is_file():
        start = schema.load_file(init)
    else:
        fail(f"--init {init!r}: not a preset of {model} ({', '.join(schema.presets)}) nor a parameter file")
    for text in sets:
        name, _, value = text.partition("=")
        start[name.strip()] = float(value)
    return schema.check_params(start, where="--init/--set")


def _selection(kw):
    from calibrate.selection import Selection

    if kw["point_stride"] < 1 or (kw["sample"] is not None and kw["sample"] < 1):
        fail("--point-stride and --sample must be >= 1")
    return Selection(max_eps_s=kw["max_eps_s"], p_range=_floats(kw["p_range"], "--p-range", (2,)),
                     region=_floats(kw["region"], "--region", (4, 6)), first=kw["max_points"],
                     point_stride=kw["point_stride"], sample=kw["sample"], seed=kw["seed"],
                     point_weights=kw["point_weights"],
                     component_weights=_floats(kw["component_weights"], "--component-weights", (3, 6)))


def _new_job(kw):
    from calibrate.job import JOB_FILE, Job
    from calibrate.train import Settings

    if kw["data_path"] is None or kw["out"] is None:
        fail("--data and --out are required (or --resume OUT to continue a calibration)")
    if (Path(kw["out"]) / JOB_FILE).is_file():
        fail(f"--out {kw['out']}: holds a calibration already ({JOB_FILE}); --resume {kw['out']} continues it, "
             "or choose another --out")
    schema = registry.get(kw["model"]).schema
    fractions = _floats(kw["split"], "--split", (3,))
    if min(kw["epochs"], kw["stride"], kw["chunk_points"], kw["checkpoint_every"]) < 1:
        fail("--epochs, --stride, --chunk-points and --checkpoint-every must be >= 1")
    if kw["batch_points"] is not None and kw["optimizer"] != "adam":
        fail(f"--batch-points is for --optimizer adam; {kw['optimizer']} uses all training points")
    if not 0 < kw["gamma_min"] <= kw["gamma_max"]:
        fail(f"need 0 < --gamma-min <= --gamma-max, got {kw['gamma_min']}, {kw['gamma_max']}")
    try:
        options = schema.check_options(_options(schema, kw), where="calibrate")
        start = _start(schema, kw["model"], kw["init"], kw["sets"])
    except ValueError as exc:
        fail(str(exc))
    settings = Settings(model=kw["model"], epochs=kw["epochs"], lr=kw["lr"], lr_final=kw["lr_final"],
                        gamma_max=kw["gamma_max"], gamma_min=kw["gamma_min"], split=fractions, seed=kw["seed"],
                        optimizer=kw["optimizer"], penalty=kw["penalty"], batch_points=kw["batch_points"],
                        chunk_points=kw["chunk_points"], stride=kw["stride"], options=options,
                        parametrisation=kw["parametrisation"], checkpoint_every=kw["checkpoint_every"])
    return Job(str(kw["data_path"]), str(kw["out"]), start, settings, _selection(kw))


def _report(result: dict, out: Path) -> None:
    best = result["best_val_loss"]
    click.echo(f"best validation misfit {best if best is None else f'{best:.4g}'} at epoch {result['best_epoch']}; "
               f"test misfit {result['test_loss']:.4g}; {result['epochs_run']} epochs in {result['wall_s']:.1f} s"
               + (" (interrupted; --resume continues)" if result["interrupted"] else ""))
    for k, v in result["params"].items():
        click.echo(f"  {k:9s} {result['initial'][k]:.5g} -> {v:.5g}")
    dom = result.get("dominant_points", {})
    if "share_of_top_10" in dom:
        click.echo(f"  the 10 largest of {result['selection']['points']} points make "
                   f"{dom['share_of_top_10']:.1%} of the misfit (contributions.png)")
    click.echo(f"written: {', '.join(Path(f).name for f in result['files'])} in {out}")
    if result["failure"]:
        fail(f"calibration failed in {result['failure']}; the best parameters so far "
             f"(epoch {result['best_epoch']}) are in {out / 'params.toml'}", code=3)
