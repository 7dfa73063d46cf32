"""The live preview window (``engine.preview``) as a recorder."""
from __future__ import annotations

from engine.recorders.base import Interval, Recorder, Step, Timed


class PreviewRecorder(Recorder):
    """Adds every step's curve values to the window and redraws it at the steps of ``due``."""

    gated = True

    def __init__(self, preview, due: Interval):
        self.preview, self.due = preview, due

    def start(self, s: Step, resumed: bool) -> None:
        if not resumed:
            self._draw(s)

    def on_step(self, s: Step) -> None:
        self.preview.add_curve_point(s.values)
        if self.due(s.step):
            self._draw(s)

    def _draw(self, s: Step) -> None:
        with Timed(self):
            self.preview.draw(s.step, s.model, s.state)
