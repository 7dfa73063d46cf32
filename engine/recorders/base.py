"""The state after one step as recorders see it, and the recorder interface."""
from __future__ import annotations

import time

import numpy as np


class Step:
    """The model after ``step`` (time ``step * dt`` s) with its curve values; ``state`` is the FEM
    state (``u``, ``v``, ``stress``, ``strain``), copied from the device at most once."""

    def __init__(self, model, step: int, values: np.ndarray):
        self.model, self.step, self.values = model, step, values
        self.time = step * model.case.dt
        self._state = None

    @property
    def state(self) -> dict:
        if self._state is None:
            self._state = self.model.fem.state()
        return self._state


class Recorder:
    """One output of a run, written at its own interval; ``seconds`` counts as output time (s).
    A ``gated`` recorder records a step only once the checks at frames passed."""

    seconds = 0.0
    gated = False

    def start(self, s: Step, resumed: bool) -> None:
        """Before the first step; a new run (``resumed`` False) records its initial state."""
        if not resumed:
            self.on_step(s)

    def on_step(self, s: Step) -> None:
        """After a good step."""

    def close(self) -> None:
        """At the end of the run, also when it stopped early."""


class Timed:
    """Adds the time spent inside a ``with`` block to ``recorder.seconds``."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.recorder.seconds += time.perf_counter() - self.t0


class Interval:
    """Steps that are multiples of ``every`` (none when 0), and the run's ``last`` step if given."""

    def __init__(self, every: int, last: int | None = None):
        self.every, self.last = every, last

    def __call__(self, step: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == self.last)
