"""``engine element``: single material-point tests of the constitutive surrogates."""
from __future__ import annotations

import logging
from pathlib import Path

import click
import numpy as np

from engine.cli_common import arch_option, fp_option, start_backend
from engine.element import TESTS
from kernels import registry

log = logging.getLogger(__name__)

MODELS = registry.names(point_tests=True)
TEST_HELP = ("ctc: drained triaxial compression (lateral stress p0); ptc: plane-strain compression; "
             "iso: isotropic compression and unloading; shear: drained simple shear; "
             "replay: stresses for --strain histories")


def _parse_sets(sets) -> dict:
    out = {}
    for s in sets:
        if "=" not in s:
            raise click.BadParameter(f"{s!r} is not NAME=VALUE", param_hint="--set")
        k, v = s.split("=", 1)
        k = k.strip()
        try:
            out[k] = float(v)
        except ValueError:
            raise click.BadParameter(f"{k}={v!r}: value must be a number", param_hint="--set") from None
    return out


@click.command("element")
@click.option("--model", type=click.Choice(MODELS), default="csuh", show_default=True, help="Material model.")
@click.option("--test", "test", type=click.Choice(TESTS), default="ctc", show_default=True, help=TEST_HELP)
@click.option("--p0", type=float, default=100e3, show_default=True,
              help="Initial isotropic mean pressure (Pa, compression positive); ctc/ptc/shear confining stress.")
@click.option("--axial-strain", "axial_strain", type=float, default=0.2, show_default=True,
              help="Final axial strain (ctc, ptc), volumetric strain (iso) or shear strain gamma (shear); "
                   "compression positive.")
@click.option("--steps", type=int, default=2000, show_default=True, help="Number of strain steps.")
@click.option("--params", "params_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Parameter file (TOML, names as in docs/materials.md).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Set one parameter, e.g. --set kappa=0.05 or --set phi=30 (repeatable; wins over --params).")
@click.option("--lode", type=click.Choice(("exp", "two-anchor", "ts", "none")), default=None,
              help="CSUH Lode-angle treatment (default exp).")
@click.option("--lode-grad", type=click.Choice(("full", "frozen")), default=None, help="CSUH yield gradient.")
@click.option("--delta-r", "delta_r", type=float, default=None, help="Soft-gate width (0 = off; default 0.03).")
@click.option("--substep-rule", type=click.Choice(("paper", "linear")), default=None, help="Sub-step rule (Eq. 16).")
@click.option("--eps-ref", "eps_ref", type=float, default=None, help="Reference strain of Eq. 16 (default 1e-4).")
@click.option("--n-sub", "n_sub", type=int, default=None, help="Fixed number of sub-steps per step (0 = rule).")
@click.option("--mcc-init", type=click.Choice(("nc", "ncl")), default=None, help="MCC initial yield size.")
@click.option("--strain", "strain_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="replay: total strain histories .npy, (n_points, n_steps, 3, 3), tension positive.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output: CSV (PNG plot beside it) or, for replay, .npy of stresses (Pa, tension +). "
                   "Default element_<model>_<test>.csv.")
@click.option("--plot/--no-plot", default=True, help="Write the PNG plot beside the CSV.")
@arch_option
@fp_option
def element(model, test, p0, axial_strain, steps, params_file, sets, lode, lode_grad, delta_r, substep_rule,
            eps_ref, n_sub, mcc_init, strain_file, out, plot, arch, fp):
    """Element (single point) test of a constitutive model; CSV columns eps_a, eps_v, p, q, e
    (compression positive, Pa) and the stress and strain components (tension positive)."""
    schema = registry.get(model).schema
    given = {}
    if params_file is not None:
        try:
            given.update(schema.load_file(params_file))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--params") from None
    sets = _parse_sets(sets)
    if {"M", "phi"} & set(sets):
        given.pop("M", None)
        given.pop("phi", None)
    given.update(sets)
    flags = {"lode": lode, "lode_grad": lode_grad, "delta_r": delta_r, "substep_rule": substep_rule,
             "eps_ref": eps_ref, "n_sub": n_sub, "mcc_init": mcc_init}
    options = {k: v for k, v in flags.items() if v is not None}
    try:
        params = schema.check_params(given, where="element")
        options = schema.check_options(options, where="element")
    except ValueError as exc:
        msg = str(exc).replace("element: material.", "")
        if "is not a key of model" in msg:
            key = msg.split()[0]
            msg = f"--{key.replace('_', '-')} does not apply to model {model}"
        raise click.UsageError(msg) from None
    if p0 <= 0:
        raise click.BadParameter("must be > 0 (Pa, compression positive)", param_hint="--p0")
    if steps < 2:
        raise click.BadParameter("must be >= 2", param_hint="--steps")
    if test == "replay":
        if strain_file is None or out is None:
            raise click.UsageError("--test replay needs --strain FILE.npy and --out FILE.npy")
        try:
            strain = np.load(strain_file)
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"cannot read {strain_file}: {exc}", param_hint="--strain") from None
        if strain.ndim != 4 or strain.shape[2:] != (3, 3):
            raise click.BadParameter(f"shape {strain.shape}; expected (n_points, n_steps, 3, 3)",
                                     param_hint="--strain")
    elif strain_file is not None:
        raise click.UsageError("--strain is only used with --test replay")

    start_backend(arch, fp)

    if test == "replay":
        from kernels.stress_point import replay

        stress = replay(strain, p0, model, params, options)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, stress)
        click.echo(f"replay: {strain.shape[0]} points x {strain.shape[1]} steps -> {out}")
        return

    from engine import element as el

    cols = el.run_test(model, test, p0, axial_strain, steps, params, options)
    out = out or Path(f"element_{model}_{test}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    el.write_csv(out, cols)
    eta = cols["q"] / cols["p"]
    msg = f"{model} {test}: q/p max {eta.max():.3f}, end {eta[-1]:.3f}; eps_v end {100 * cols['eps_v'][-1]:.2f} % -> {out}"
    if plot:
        png = out.with_suffix(".png")
        opt = ", ".join(f"{k}={v}" for k, v in options.items() if k in ("lode", "delta_r", "mcc_init"))
        el.plot(png, cols, title=f"{model} {test}, p0 = {p0 / 1e3:g} kPa" + (f" ({opt})" if opt else ""))
        msg += f", {png.name}"
    click.echo(msg)
