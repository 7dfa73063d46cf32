"""``engine calibrate``: fit a constitutive surrogate to Gauss-point histories (calibrate/)."""
from __future__ import annotations

from pathlib import Path

import click

from engine.cli_common import arch_option, fail, fp_option, start_backend
from kernels import registry


@click.command("calibrate")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="dataset.h5 of a run, or .npz with strain, stress (n_points, n_steps, 3, 3) and p0.")
@click.option("--model", type=click.Choice(registry.names(differentiable=True)), default="csuh", show_default=True)
@click.option("--epochs", type=int, default=100, show_default=True, help="Epochs (CMA-ES: generations).")
@click.option("--lr", type=float, default=0.01, show_default=True, help="Adam learning rate on the weights W.")
@click.option("--lr-final", type=float, default=None,
              help="Learning rate at the last epoch (exponential decay from --lr); default: constant --lr.")
@click.option("--delta-r", type=float, default=None, help="Soft gate width (default 0.03; 0 disables).")
@click.option("--lode", type=click.Choice(["exp", "two-anchor", "ts"]), default=None,
              help="CSUH Lode-angle treatment (default exp).")
@click.option("--scheme", type=click.Choice(["1", "2", "3"]), default=None,
              help="Paper scheme: 1 = ts without gate, 2 = ts with gate, 3 = exp with gate (sets --lode, --delta-r).")
@click.option("--gamma-max", type=float, default=0.1, show_default=True, help="Penalty weight at the first epoch.")
@click.option("--gamma-min", type=float, default=0.01, show_default=True, help="Penalty weight at the last epoch.")
@click.option("--penalty", type=click.Choice(["linear", "squared"]), default="linear", show_default=True)
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="Train,validation,test fractions of points.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the point shuffle.")
@click.option("--init", default="original", show_default=True,
              help="Initial parameters: original, optimised-2d, optimised-3d, optimised (IME), or a params TOML.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Change one initial parameter (repeatable).")
@click.option("--optimizer", type=click.Choice(["adam", "lbfgs", "cmaes"]), default="adam", show_default=True,
              help="adam (the paper's), lbfgs (same gradients, quasi-Newton; --epochs = evaluations), "
                   "cmaes (derivative-free baseline).")
@click.option("--batch-points", type=int, default=None, help="Mini-batch size in points (default: all).")
@click.option("--stride", type=int, default=1, show_default=True, help="Use every k-th step in the loss.")
@click.option("--points", "max_points", type=int, default=None, help="Use only the first N points of the data.")
@click.option("--chunk-points", type=int, default=256, show_default=True, help="Points per Taichi batch (memory).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@arch_option
@fp_option
@click.option("--progress/--no-progress", default=True)
def calibrate(data_path, model, epochs, lr, lr_final, delta_r, lode, scheme, gamma_max, gamma_min, penalty, split, seed,
              init, sets, optimizer, batch_points, stride, max_points, chunk_points, out, arch, fp, progress):
    """Calibrate MODEL's parameters on recorded stress-strain histories (Adam, L-BFGS or CMA-ES)."""
    schema = registry.get(model).schema
    try:
        fractions = tuple(float(x) for x in split.split(","))
    except ValueError:
        fail(f"--split {split!r}: expected three numbers, e.g. 0.8,0.1,0.1")
    if epochs < 1 or stride < 1 or chunk_points < 1:
        fail("--epochs, --stride and --chunk-points must be >= 1")
    if batch_points is not None and optimizer != "adam":
        fail(f"--batch-points is for --optimizer adam; {optimizer} uses all training points")
    if not 0 < gamma_min <= gamma_max:
        fail(f"need 0 < --gamma-min <= --gamma-max, got {gamma_min}, {gamma_max}")
    options = {}
    has_lode = "lode" in schema.default_options()
    if has_lode:
        options["lode"] = lode or "exp"
    elif lode:
        fail("--lode applies to --model csuh only")
    options["delta_r"] = 0.03 if delta_r is None else delta_r
    if scheme:
        if not has_lode:
            fail("--scheme applies to --model csuh only")
        options.update({"1": {"lode": "ts", "delta_r": 0.0}, "2": {"lode": "ts", "delta_r": 0.03},
                        "3": {"lode": "exp", "delta_r": 0.03}}[scheme])
    try:
        options = schema.check_options(options, where="calibrate")
        if init in schema.presets:
            start = dict(schema.presets[init])
        elif Path(init).is_file():
            start = schema.load_file(init)
        else:
            presets = ", ".join(schema.presets)
            fail(f"--init {init!r}: not a preset of {model} ({presets}) nor a parameter file")
        for text in sets:
            name, _, value = text.partition("=")
            start[name.strip()] = float(value)
        start = schema.check_params(start, where="--init/--set")
    except ValueError as exc:
        fail(str(exc))

    from engine.dataset import read_dataset

    try:
        raw = read_dataset(data_path)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if max_points:
        raw = {**raw, "strain": raw["strain"][:max_points], "stress": raw["stress"][:max_points]}
    try:
        import torch  # noqa: F401
    except ImportError:
        fail('engine calibrate needs PyTorch: pip install torch==2.13.0 -e ".[calibrate]"')
    if optimizer == "cmaes":
        try:
            import cma  # noqa: F401
        except ImportError:
            fail('--optimizer cmaes needs the cma package: pip install -e ".[calibrate]"')
    start_backend(arch, fp)
    from calibrate.train import Calibration, Settings, prepare_data

    try:
        data = prepare_data(raw, stride)
        settings = Settings(model=model, epochs=epochs, lr=lr, lr_final=lr_final, gamma_max=gamma_max, gamma_min=gamma_min,
                            split=fractions, seed=seed, optimizer=optimizer, penalty=penalty,
                            batch_points=batch_points, chunk_points=chunk_points, stride=stride, options=options)
        cal = Calibration(data, start, settings)
    except ValueError as exc:
        fail(f"{data_path}: {exc}")
    result = cal.run(progress=progress)
    files = cal.write(out, result)
    click.echo(f"best validation misfit {result['best_val_loss']:.4g} at epoch {result['best_epoch']}; "
               f"test misfit {result['test_loss']:.4g}; {result['epochs_run']} epochs in {result['wall_s']:.1f} s"
               + (" (interrupted)" if result["interrupted"] else ""))
    for k, v in result["params"].items():
        click.echo(f"  {k:9s} {result['initial'][k]:.5g} -> {v:.5g}")
    click.echo(f"written: {', '.join(f.name for f in files)} in {out}")
