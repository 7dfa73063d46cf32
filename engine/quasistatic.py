"""Keeping an explicit run quasi-static, and showing that it is.

Two pieces, both driven by ``engine.driver``:

* :class:`MassScaling`: with ``run.mass_scaling = "auto"`` the nodal masses are scaled so that
  ``run.dt`` is ``run.dt_safety`` times the stable step of the material as built; when a
  pressure-dependent material stiffens during the run and ``run.dt`` comes within the upper half of
  the safety margin (above ``(1 + dt_safety) / 2`` of the stable step), the masses are raised again
  so that the full margin is back (variable mass scaling at intervals, as explicit codes offer it).
  The time step and the loading stay as the case gives them; only inertia grows, and the energy
  ratio below says whether the run is still quasi-static. A fixed ``run.mass_scaling`` is kept
  fixed and the run stops with a message when the material outgrows it.
* :class:`QuasiStaticRecorder`: at every frame, the kinetic energy, the internal energy (the work
  of the stresses on the strains, summed point by point in magnitude so that unloading regions do
  not cancel loading ones: ``ExplicitFEM.measure_energy``), their ratio (:func:`energy_ratio`), the mass-scaling
  factor and, for DEM cells, the cells' state counts, written to ``quasistatic.csv`` and shown in
  the progress line. A run whose ratio exceeds ``run.max_energy_ratio`` after its first
  ``WARMUP`` of steps warns once with the step and what to change.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from engine.recorders.base import Interval, Recorder, Step, Timed
from engine.runfolder import QUASISTATIC

log = logging.getLogger(__name__)

WARMUP = 0.05            # fraction of the steps before the energy ratio is judged (start-up transient)
CHECK_EVERY = 10         # steps between stable-step checks
CELL_KEYS = ("loose", "capped", "relax_mean", "relax_max", "inertia_max")
MAX_INERTIA = 1e-3       # DEM cells: quasi-static regime of dense granular flow, I < 1e-3 (GDR MiDi 2004)


class MassScaling:
    """The stable-step check of a run and, with ``run.mass_scaling = "auto"``, its variable mass
    scaling. ``history`` lists ``[step, factor]`` of every raise (after the initial factor)."""

    def __init__(self, model, history: list | None = None):
        self.model = model
        self.adaptive = model.case.mass_scaling == "auto"
        self.history = [list(h) for h in (history or [])]
        self.due = Interval(CHECK_EVERY)

    def check(self, step: int) -> str:
        """At every ``CHECK_EVERY`` steps: raise the masses if needed (adaptive) or return the
        message that stops a run with a fixed factor whose ``run.dt`` became unstable."""
        if not self.due(step):
            return ""
        model = self.model
        case = model.case
        wave = model.material.wave_modulus()
        if wave <= model.wave_modulus:
            return ""
        dt_stable = model.dt_crit * np.sqrt(model.wave_modulus / wave)      # unscaled, at today's modulus
        dt_now = dt_stable * np.sqrt(model.mass_scaling)
        if not self.adaptive:
            if case.dt <= dt_now:
                return ""
            need = model.mass_scaling * (case.dt / dt_now) ** 2
            return (f"step {step}: the material stiffened (constrained modulus {wave:.3g} Pa, "
                    f"{wave / model.wave_modulus:.3g} x the initial) and run.dt = {case.dt:g} s is above the "
                    f"stable step {dt_now:.3g} s; set run.mass_scaling >= {need:.3g} or \"auto\" "
                    "(variable mass scaling)")
        if case.dt <= 0.5 * (1.0 + case.dt_safety) * dt_now:
            return ""
        self.raise_to(step, (case.dt / (case.dt_safety * dt_stable)) ** 2)
        return ""

    def raise_to(self, step: int, factor: float) -> None:
        """Scale the masses to ``factor`` times the real ones from ``step`` on."""
        model = self.model
        old = model.mass_scaling
        model.fem.set_density(model.case.material.density * factor)
        model.mass_scaling = float(factor)
        self.history.append([int(step), float(factor)])
        if int(np.log2(factor)) > int(np.log2(old)):
            log.info("step %d: the material stiffened; mass scaling raised to %.3g (run.dt stays %g s)",
                     step, factor, model.case.dt)

    def factor_at(self, step: int, initial: float) -> float:
        """The factor in force after ``step`` (``initial`` before any raise)."""
        factor = initial
        for s, f in self.history:
            if s <= step:
                factor = f
        return factor


class QuasiStaticRecorder(Recorder):
    """``quasistatic.csv``: step, time (s), kinetic_J, internal_J (stress work in magnitude), energy_ratio, mass_scaling and,
    for a DEM material, its cell counts (``CELL_KEYS``), at every frame. ``postfix`` is the
    progress line's summary of the last frame."""

    gated = True

    def __init__(self, run_dir: Path, model, due: Interval, append: bool = False):
        self.model, self.due = model, due
        self.cells = bool(model.material.step_report())
        self.limit = model.case.max_energy_ratio
        self.warm = max(1, int(WARMUP * model.case.steps))
        self.warned = self.warned_inertia = False
        self.postfix = ""
        self.file = open(run_dir / QUASISTATIC, "a" if append else "w", newline="")
        self.writer = csv.writer(self.file)
        if not append:
            self.writer.writerow(["step", "time", "kinetic_J", "internal_J", "energy_ratio", "mass_scaling"]
                                 + (list(CELL_KEYS) if self.cells else []))

    def on_step(self, s: Step) -> None:
        if not self.due(s.step):
            return
        with Timed(self):
            kinetic, internal = self.model.fem.energies()
            ratio = energy_ratio(kinetic, internal)
            row = [s.step, repr(float(s.time)), repr(kinetic), repr(internal), repr(ratio),
                   repr(float(self.model.mass_scaling))]
            report = self.model.material.step_report() if self.cells else {}
            row += [report.get(k, 0) for k in CELL_KEYS] if self.cells else []
            self.writer.writerow(row)
            self.file.flush()
            self.postfix = f"KE/IE {ratio:.2g}, mass x{self.model.mass_scaling:.3g}"
            if self.cells:
                self.postfix += (f", loose {report['loose']}, capped {report['capped']}, "
                                 f"relax {report['relax_mean']:.3g}, I {report['inertia_max']:.2g}")
                self._judge_inertia(s.step, report["inertia_max"])
            if s.step >= self.warm and ratio > self.limit and not self.warned:
                self.warned = True
                log.warning("step %d: kinetic energy is %.3g of the internal energy (above run.max_energy_ratio "
                            "= %g): the run is no longer quasi-static; use more run.steps (smaller dt, the "
                            "same loading), more damping, or a lower run.mass_scaling", s.step, ratio, self.limit)

    def _judge_inertia(self, step: int, inertia: float) -> None:
        if inertia > MAX_INERTIA and not self.warned_inertia:
            self.warned_inertia = True
            log.warning("step %d: a DEM cell is strained at inertia number %.3g (above %g, the quasi-static "
                        "regime): its response depends on the strain rate wherever relaxation does not undo it; "
                        "raise material.dem.steps_per_increment", step, inertia, MAX_INERTIA)

    def close(self) -> None:
        self.file.close()


def energy_ratio(kinetic: float, internal: float) -> float:
    """The kinetic share of the energy, ``KE / (KE + IE)``: equal to KE/IE to first order while
    small (the quasi-static range), bounded by 1, 0 at rest, never inf or NaN."""
    total = kinetic + internal
    return float(kinetic / total) if total > 0 else 0.0
