"""Neural recordings as spike events: auditory-cortex CSV, STN .mat, a plain spike table, binned counts.

Every reader returns ``Trials``: one SPIKES_DTYPE array per trial (x = unit 0..n_units-1, t in us
from the trial start), labels, trial lengths. The spike-table format is documented in
docs/formats.md; ``counts_to_events`` turns binned counts into spikes spread inside each bin.
"""

from __future__ import annotations

import csv
import io
import operator
from pathlib import Path

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import SPIKES_DTYPE

from ._common import natural_key
from ._trials import MAX_UNIT, Trials, counts_to_events
from ._trials import TrialsDataset as _TrialsDataset
from ._trials import bins_to_events as _bins_to_events
from ._trials import fail as _fail
from .spike_table import (
    TABLE_SPIKES,
    TABLE_TRIALS,
    SpikeTableDataset,
    read_spike_table,
    write_spike_table,
)

__all__ = ["Trials", "read_auditory_cortex", "read_stn", "read_spike_table", "write_spike_table",
           "counts_to_events", "AuditoryCortexDataset", "STNDataset", "SpikeTableDataset",
           "TABLE_SPIKES", "TABLE_TRIALS"]

AC_BINS, AC_BIN_US = 500, 1000
ROLES = ("train", "val", "test")


def read_auditory_cortex(path: str | Path, on_error: str = "raise") -> Trials:
    """Szabo & Bartho (2021) CSV: one 500 ms trial per row, columns found by header name.

    Columns ``0``..``499`` are 1 ms bins holding 0 or the firing cell's id (1..N), ``sound_ID`` the
    class, ``role`` train/val/test. Cell id c becomes unit c - 1; a spike sits at its bin start.
    Errors name the file and the row (1-based line number; the header is row 1); with
    ``on_error="skip"`` bad rows go to ``Trials.skipped``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read as text: {exc}") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise DataError(path, "file is empty (no header)", row=1)
    header = [h.strip() for h in header]
    need = [str(i) for i in range(AC_BINS)] + ["sound_ID", "role"]
    missing = [h for h in need if h not in header]
    if missing:
        raise DataError(path, f"header lacks columns {missing[:5]}{'...' if len(missing) > 5 else ''}",
                        row=1)
    c_bins = [header.index(str(i)) for i in range(AC_BINS)]
    c_sound, c_role = header.index("sound_ID"), header.index("role")
    fast = _ac_fast(text, header, c_bins, c_sound, c_role)
    if fast is not None:
        cells, sounds, roles = fast
        where = [f"{path}:row {line}" for line in range(2, len(cells) + 2)]
        skipped: list | None = []
    else:
        cells, sounds, roles, where, skipped = _ac_slow(path, rows, header, c_bins, c_sound, c_role,
                                                        on_error)
    if not len(cells):
        raise DataError(path, "file holds no trials", row=2)
    trial, b = np.nonzero(cells)
    ev = np.empty(len(b), dtype=SPIKES_DTYPE)
    ev["t"] = b.astype(np.int64) * AC_BIN_US
    ev["x"] = cells[trial, b] - 1
    events = np.split(ev, np.searchsorted(trial, np.arange(1, len(cells))))
    n_units = max(int(cells.max()), 1)
    labels = [str(int(v)) for v in sounds]
    return Trials(events, labels, [AC_BINS * AC_BIN_US] * len(events), n_units, where,
                  list(roles), skipped or [])


def _ac_fast(text: str, header: list[str], c_bins, c_sound, c_role):
    """Whole-file parse with np.loadtxt when the file is clean; None sends it to the slow path."""
    lines = text.splitlines()[1:]
    n_sep = len(header) - 1
    if not lines or any(not ln.strip() or ln.count(",") != n_sep or '"' in ln for ln in lines):
        return None
    try:
        nums = np.loadtxt(lines, delimiter=",", usecols=[*c_bins, c_sound], dtype=np.int64, ndmin=2)
        roles = np.loadtxt(lines, delimiter=",", usecols=[c_role], dtype=str, ndmin=1)
    except ValueError:
        return None
    roles = np.char.strip(roles)
    cells, sounds = nums[:, :-1], nums[:, -1]
    if (cells.min() < 0 or cells.max() > MAX_UNIT or sounds.min() < 1
            or not np.isin(roles, ROLES).all()):
        return None
    return cells, sounds, roles.tolist()


def _ac_slow(path, rows, header, c_bins, c_sound, c_role, on_error):
    """Row by row, so that the first bad row is named (or skipped and recorded)."""
    pick = operator.itemgetter(*c_bins)
    skipped: list | None = [] if on_error == "skip" else None
    cells, sounds, roles, where = [], [], [], []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            _fail(skipped, path, f"{len(row)} fields, header has {len(header)}", line)
            continue
        try:
            v = np.array(pick(row), dtype=np.float64)
            sound = float(row[c_sound])
        except ValueError as exc:
            _fail(skipped, path, f"not a number: {exc}", line)
            continue
        role = row[c_role].strip()
        if (v.min() < 0 or v.max() > MAX_UNIT or np.any(v != np.round(v)) or sound != round(sound)
                or sound < 1):
            _fail(skipped, path, f"bins must hold cell ids 0..{MAX_UNIT}, sound_ID an integer >= 1",
                  line)
            continue
        if role not in ROLES:
            _fail(skipped, path, f"role {role!r} is not one of {list(ROLES)}", line)
            continue
        cells.append(v.astype(np.int64))
        sounds.append(int(sound))
        roles.append(role)
        where.append(f"{path}:row {line}")
    arr = np.array(cells, dtype=np.int64).reshape(len(cells), AC_BINS)
    return arr, sounds, roles, where, skipped


def read_stn(path: str | Path) -> Trials:
    """Kramer & Eden STN ``.mat``: ``train`` (trials, 1 ms bins) spike counts, ``direction`` 0/1.

    One unit (x = 0); t from the start of the 2 s trial (``t`` = -1000 ms, the go cue at 1 s).
    """
    import scipy.io

    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many kinds (even UnboundLocalError) on corrupt files
        raise DataError(path, f"cannot read as a MATLAB file: {exc!r}") from None
    for key in ("train", "direction"):
        if key not in mat:
            raise DataError(path, f"no variable {key!r} (expects train, direction)")
    train, direction = np.asarray(mat["train"]), np.asarray(mat["direction"]).ravel()
    if train.ndim != 2 or len(direction) != len(train):
        raise DataError(path, f"train {train.shape} and direction {direction.shape} do not match")
    bad = np.flatnonzero(np.any(train < 0, axis=1) | ~np.isin(direction, (0, 1)))
    if len(bad):
        raise DataError(path, "negative spike count or direction not 0/1", row=int(bad[0]))
    units = np.zeros(train.shape[1], dtype=np.int64)
    events = [_bins_to_events(units, r.astype(np.int64), 1000) for r in train]
    return Trials(events, [str(int(d)) for d in direction], [train.shape[1] * 1000] * len(train),
                  1, [f"{path}:trial {i}" for i in range(len(train))])


def _find(root: Path, sub: str, pattern: str, session: str | None) -> Path:
    """``root`` itself if a file, else the session file (default: the first) under ``root/sub``."""
    if root.is_file():
        return root
    folder = root / sub if (root / sub).is_dir() else root
    files = sorted(folder.glob(pattern), key=lambda q: natural_key(q.name))
    if not files:
        raise DataError(folder, f"no {pattern} files found")
    if session is None:
        return files[0]
    for f in files:
        if f.stem == session:
            return f
    raise ConfigError("session", f"no session {session!r} in {folder}; have {[f.stem for f in files]}")


class AuditoryCortexDataset(_TrialsDataset):
    """Rat auditory cortex trials (18 sounds). ``root_or_csv``: a CSV, a folder of them, or the data
    root (``neural/auditory_cortex``); with a folder, ``session`` picks a file stem (default: the
    first, e.g. ``D_A_I``). ``role`` keeps the authors' train/val/test split (None: all trials).
    """

    name = "auditory-cortex"

    def __init__(self, root_or_csv: str | Path, role: str | None = None, *, session: str | None = None,
                 on_error: str = "raise", limit: int | None = None, transform=None) -> None:
        super().__init__(on_error=on_error, limit=limit, transform=transform)
        if role is not None and role not in ROLES:
            raise ConfigError("role", f"must be one of {list(ROLES)} or None, got {role!r}")
        self.file = _find(Path(root_or_csv), "neural/auditory_cortex", "*.csv", session)
        self.session, self.role = self.file.stem, role
        trials = read_auditory_cortex(self.file, on_error=self.on_error)
        keep = [i for i, r in enumerate(trials.roles) if role is None or r == role]
        self._setup(trials, tuple(str(i) for i in range(1, 19)), keep)

    def role_of(self, i: int) -> str:
        return self._trials.roles[self._keys[i]]


class STNDataset(_TrialsDataset):
    """Human subthalamic single unit, 50 trials of 2 s, classes "0" (left) / "1" (right)."""

    name = "stn"

    def __init__(self, root: str | Path, *, on_error: str = "raise", limit: int | None = None,
                 transform=None) -> None:
        super().__init__(on_error=on_error, limit=limit, transform=transform)
        self.file = _find(Path(root), "neural/stn", "*.mat", None)
        self._setup(read_stn(self.file), ("0", "1"))
