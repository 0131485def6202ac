"""Neurodata Without Borders (NWB 2) spike recordings: ``units.spike_times`` cut by the trials table.

An NWB file's ``units`` table holds each unit's spike times (seconds, one ragged column); its
``trials`` table holds ``start_time`` / ``stop_time`` (seconds) and any further columns, one of
which names the stimulus or condition (the class label). A trial becomes one sample: the spikes of
every unit in [start, stop), t in microseconds from the trial's start, x = the unit's row in the
units table; layout ``spikes``. ``write_nwb`` writes spikes and trials in that layout (how the
tests and users convert a spike table). Read and written with ``pynwb`` (optional extra ``nwb``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import SPIKES_DTYPE

from ._common import SampleDataset, natural_key
from ._trials import Trials, TrialsDataset

__all__ = ["read_nwb", "write_nwb", "NWBUnitsDataset", "LABEL_COLUMNS"]

#: trials-table columns tried, in order, for the class label when none is named
LABEL_COLUMNS = ("label", "stimulus", "stimulus_id", "sound_id", "condition", "target", "direction")


def _pynwb():
    try:
        import pynwb
    except ImportError:
        raise ConfigError("nwb", "NWB files need pynwb: pip install 'streamlsm[nwb]'") from None
    return pynwb


def write_nwb(path: str | Path, spike_times_s: Sequence[np.ndarray], starts_s: Sequence[float],
              stops_s: Sequence[float], labels: Sequence[str | None], *, label_column: str = "label",
              extra_columns: dict[str, Sequence[Any]] | None = None, description: str = "",
              session_start: datetime | None = None) -> Path:
    """An NWB file with one unit per entry of ``spike_times_s`` (sorted seconds) and one trial
    per start/stop, its label in ``label_column`` (None written as ""). Written atomically."""
    pynwb = _pynwb()
    if not len(starts_s) == len(stops_s) == len(labels):
        raise ConfigError("trials", f"starts, stops and labels differ in length: {len(starts_s)}, "
                          f"{len(stops_s)}, {len(labels)}")
    nwb = pynwb.NWBFile(session_description=description or "streamlsm spike recording",
                        identifier=Path(path).stem,
                        session_start_time=session_start or datetime(2000, 1, 1, tzinfo=UTC))
    for times in spike_times_s:
        nwb.add_unit(spike_times=np.asarray(times, dtype=np.float64))
    nwb.add_trial_column(name=label_column, description="class label of the trial")
    extra = extra_columns or {}
    for name in extra:
        nwb.add_trial_column(name=name, description=name)
    for k, (a, b, lab) in enumerate(zip(starts_s, stops_s, labels, strict=True)):
        nwb.add_trial(start_time=float(a), stop_time=float(b),
                      **{label_column: "" if lab is None else str(lab)},
                      **{name: col[k] for name, col in extra.items()})

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.nwb")  # pynwb wants the .nwb suffix
    try:
        with pynwb.NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_nwb(path: str | Path, label_column: str | None = None) -> tuple[Trials, str | None]:
    """The trials of an NWB file as spike events (see the module doc) and the label column used."""
    pynwb = _pynwb()
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such NWB file")
    try:
        io = pynwb.NWBHDF5IO(str(path), "r")
    except Exception as exc:  # h5py / hdmf errors for a file that is not NWB: translated here
        raise DataError(path, f"not a readable NWB file: {exc}") from None
    with io:
        try:
            nwb = io.read()
        except Exception as exc:
            raise DataError(path, f"not a readable NWB file: {exc}") from None
        if nwb.units is None or "spike_times" not in nwb.units.colnames:
            raise DataError(path, "has no units table with spike_times")
        if nwb.trials is None or len(nwb.trials) == 0:
            raise DataError(path, "has no trials table (start_time, stop_time) to cut samples by")
        units = nwb.units
        n_units = len(units)
        if n_units > np.iinfo(np.int16).max + 1:
            raise DataError(path, f"{n_units} units: more than the spikes layout's 32768")
        # one flat, sorted spike list: times (s) and unit rows
        per_unit = [np.asarray(units["spike_times"][i], dtype=np.float64) for i in range(n_units)]
        times = np.concatenate(per_unit) if per_unit else np.zeros(0)
        unit_of = np.repeat(np.arange(n_units), [len(u) for u in per_unit])
        order = np.argsort(times, kind="stable")
        times, unit_of = times[order], unit_of[order]
        trials = nwb.trials
        cols = trials.colnames
        if label_column is None:
            label_column = next((c for c in LABEL_COLUMNS if c in cols), None)
        elif label_column not in cols:
            raise ConfigError("label_column", f"{path}: no trials column {label_column!r}; "
                              f"columns: {list(cols)}")
        starts = np.asarray(trials["start_time"].data[:], dtype=np.float64)
        stops = np.asarray(trials["stop_time"].data[:], dtype=np.float64)
        raw_labels = list(trials[label_column].data[:]) if label_column else [None] * len(starts)
    bad = np.flatnonzero(~(stops > starts))
    if len(bad):
        raise DataError(path, f"trial {int(bad[0])} stops at or before its start", row=int(bad[0]))
    events, durations, labels, where = [], [], [], []
    lo = np.searchsorted(times, starts, side="left")
    hi = np.searchsorted(times, stops, side="left")
    for k in range(len(starts)):
        ev = np.zeros(int(hi[k] - lo[k]), SPIKES_DTYPE)
        ev["t"] = np.rint((times[lo[k]:hi[k]] - starts[k]) * 1e6)
        ev["x"] = unit_of[lo[k]:hi[k]]
        order = np.lexsort((ev["x"], ev["t"]))
        events.append(ev[order])
        durations.append(int(np.rint((stops[k] - starts[k]) * 1e6)))
        lab = raw_labels[k]
        lab = lab.decode() if isinstance(lab, bytes) else lab
        labels.append(None if lab is None or lab == "" else str(lab))
        where.append(f"{path} trial {k}")
    trials_out = Trials(events=events, labels=labels, durations_us=np.asarray(durations, np.int64),
                        n_units=n_units, where=where)
    return trials_out, label_column


class NWBUnitsDataset(TrialsDataset):
    """The trials of an NWB file as samples of spikes (see the module doc). ``label_column``
    names the trials column holding the class (default: the first of LABEL_COLUMNS present)."""

    name = "nwb"

    @classmethod
    def accepts(cls, path: str | Path) -> bool:
        """Whether ``path`` is an ``.nwb`` file (how ``streamlsm data info`` finds this reader)."""
        return Path(path).suffix.lower() == ".nwb" and Path(path).is_file()

    def __init__(self, path: str | Path, *, label_column: str | None = None, on_error: str = "raise",
                 limit: int | None = None, transform: Callable[[np.ndarray], Any] | None = None) -> None:
        SampleDataset.__init__(self, on_error=on_error, limit=limit, transform=transform)
        self.file = Path(path)
        trials, self.label_column = read_nwb(self.file, label_column)
        classes = tuple(sorted({lab for lab in trials.labels if lab is not None}, key=natural_key))
        self._setup(trials, classes)
