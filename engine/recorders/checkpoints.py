"""Checkpoints ``checkpoints/step_NNNNNNN.npz`` of a run (format in ``engine.runfolder``)."""
from __future__ import annotations

from pathlib import Path

from engine import runfolder
from engine.recorders.base import Interval, Recorder, Step


class CheckpointRecorder(Recorder):
    """Writes the FEM and material state at the steps of ``due`` (not counted as output time)."""

    gated = True

    def __init__(self, run_dir: Path, due: Interval):
        self.run_dir, self.due = run_dir, due

    def start(self, s: Step, resumed: bool) -> None:
        """No checkpoint of the initial state."""

    def on_step(self, s: Step) -> None:
        if self.due(s.step):
            runfolder.write_checkpoint(s.model, self.run_dir, s.step)
