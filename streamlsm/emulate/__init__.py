"""Sensor emulators: event camera, silicon cochlea, intracortical handwriting (numpy/scipy only).

The emulators return event arrays in streamlsm's layouts; writing them as dataset files is done by
the makers in ``streamlsm_sources.emulated`` (this package never imports the plug-ins).
"""

from .camera import CameraConfig, dvs_from_frames, record, saccade_path
from .cochlea import CochleaConfig, channel_frequencies, cochlea_events, cochleagram
from .cortex import Array, CortexConfig, bin_counts, pen_velocity
from .glyphs import DIGITS, LETTERS, letter_trajectory, render, render_many

__all__ = [
    "CameraConfig",
    "dvs_from_frames",
    "record",
    "saccade_path",
    "CochleaConfig",
    "channel_frequencies",
    "cochlea_events",
    "cochleagram",
    "Array",
    "CortexConfig",
    "bin_counts",
    "pen_velocity",
    "DIGITS",
    "LETTERS",
    "letter_trajectory",
    "render",
    "render_many",
]
