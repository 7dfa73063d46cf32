"""Recorders of a run: objects that write one output each at their own interval.

A recorder has ``start(s, resumed)`` (before the first step; writes the initial state of a new
run), ``on_step(s)`` (after every good step; the recorder decides whether the step is its) and
``close()``. ``s`` is a :class:`Step`. ``seconds`` is the time a recorder spent writing outputs
counted in ``run.json``'s ``output_s``. Array names and units are in ``docs/outputs.md``.
"""
from engine.recorders.base import Recorder, Step
from engine.recorders.checkpoints import CheckpointRecorder
from engine.recorders.curves import CurveRecorder, CurveWriter, read_curves
from engine.recorders.dataset import DatasetRecorder, gauss_points
from engine.recorders.frames import FrameRecorder, VTKWriter
from engine.recorders.preview import PreviewRecorder

__all__ = ["CheckpointRecorder", "CurveRecorder", "CurveWriter", "DatasetRecorder", "FrameRecorder",
           "PreviewRecorder", "Recorder", "Step", "VTKWriter", "gauss_points", "read_curves"]
