"""Neural recordings as spike events: auditory-cortex CSV, STN .mat, a plain spike table, binned counts.

Every reader returns ``Trials``: one SPIKES_DTYPE array per trial (x = unit 0..n_units-1, t in us
from the trial start), labels, trial lengths. The spike-table format is documented in
docs/formats.md; ``counts_to_events`` turns binned counts into spikes spread inside each bin.
"""

from __future__ import annotations

import csv
import io
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import SPIKES_DTYPE

from ._common import SampleDataset, atomic_write, natural_key

__all__ = ["Trials", "read_auditory_cortex", "read_stn", "read_spike_table", "write_spike_table",
           "counts_to_events", "AuditoryCortexDataset", "STNDataset", "SpikeTableDataset"]

AC_BINS, AC_BIN_US = 500, 1000
MAX_UNIT = 0x7FFF  # x is int16
ROLES = ("train", "val", "test")
TABLE_SPIKES = ("t_us", "unit")
TABLE_TRIALS = ("trial", "t_start_us", "t_end_us", "label")


@dataclass
class Trials:
    """Trials of one recording: events[i] (SPIKES_DTYPE), labels[i], durations_us[i], where[i]."""

    events: list[np.ndarray]
    labels: list[str | None]
    durations_us: list[int]
    n_units: int
    where: list[str]
    roles: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _bins_to_events(units: np.ndarray, counts: np.ndarray, bin_us: int) -> np.ndarray:
    """Spikes at bin starts: bins (b,) with unit ids and spike counts -> sorted SPIKES_DTYPE."""
    b = np.flatnonzero(counts)
    reps = counts[b].astype(np.int64)
    ev = np.empty(int(reps.sum()), dtype=SPIKES_DTYPE)
    ev["t"] = np.repeat(b.astype(np.int64) * bin_us, reps)
    ev["x"] = np.repeat(units[b], reps)
    return ev


def counts_to_events(counts: np.ndarray, bin_us: int, seed: int = 0) -> np.ndarray:
    """Binned spike counts (T bins, units) -> SPIKES_DTYPE events spread inside each bin.

    The k-th of c spikes of a unit in bin b lands at ``b * bin_us + floor((k + u) * bin_us / c)``
    with u uniform in [0, 1) from ``np.random.default_rng(seed)``: spikes stay inside their bin,
    evenly spread, and the same input and seed always give the same events (sorted by t, then x).
    """
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ConfigError("counts", f"must be a (bins, units) array, got shape {counts.shape}")
    if counts.shape[1] > MAX_UNIT + 1:
        raise ConfigError("counts", f"at most {MAX_UNIT + 1} units, got {counts.shape[1]}")
    if not isinstance(bin_us, int | np.integer) or bin_us <= 0:
        raise ConfigError("bin_us", f"must be a positive integer of microseconds, got {bin_us!r}")
    if counts.size and (np.any(counts < 0) or np.any(counts != np.round(counts))):
        row = int(np.flatnonzero(np.any((counts < 0) | (counts != np.round(counts)), axis=1))[0])
        raise DataError("counts", "counts must be non-negative integers", row=row)
    c = counts.astype(np.int64)
    b, u = np.nonzero(c)  # row-major: bins in order, units within a bin
    n = c[b, u]
    total = int(n.sum())
    first = np.repeat(np.cumsum(n) - n, n)
    k = np.arange(total) - first  # rank of each spike inside its (bin, unit) cell
    jitter = np.random.default_rng(seed).random(total)
    nn = np.repeat(n, n)
    offset = np.floor((k + jitter) * bin_us / nn).astype(np.int64)
    ev = np.empty(total, dtype=SPIKES_DTYPE)
    ev["t"] = np.repeat(b.astype(np.int64) * bin_us, n) + np.minimum(offset, bin_us - 1)
    ev["x"] = np.repeat(u, n)
    return ev[np.lexsort((ev["x"], ev["t"]))]


def _fail(trials_skipped: list | None, path, problem: str, row: int) -> None:
    if trials_skipped is None:
        raise DataError(path, problem, row=row)
    trials_skipped.append((f"{path}:row {row}", problem))


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


def _read_csv(path: Path, need: tuple[str, ...]) -> tuple[dict[str, list[str]], list[int]]:
    """Columns (by header name) of a CSV file and the line number of each data row."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read as text: {exc}") from None
    rows = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(rows, [])]
    if not header:
        raise DataError(path, "file is empty (no header)", row=1)
    missing = [h for h in need if h not in header]
    if missing:
        raise DataError(path, f"header lacks columns {missing} (has {header})", row=1)
    cols: dict[str, list[str]] = {h: [] for h in need}
    lines = []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(path, f"{len(row)} fields, header has {len(header)}", row=line)
        for h in need:
            cols[h].append(row[header.index(h)].strip())
        lines.append(line)
    return cols, lines


_LIMIT = 1 << 62  # times and ids stay far from int64 overflow


def _to_int(v) -> int | None:
    """An integer from text or a number ("12", "12.0", 12.0); None if it is not one or too large."""
    try:
        text = v.strip() if isinstance(v, str) else None
        x = int(text) if text is not None and text.lstrip("+-").isdigit() else float(v)
    except (ValueError, TypeError, OverflowError):
        return None
    if isinstance(x, float):
        if not math.isfinite(x) or x != round(x):
            return None
        x = int(x)
    return x if -_LIMIT <= x <= _LIMIT else None


def _ints(path, name: str, values, rows: list[int]) -> np.ndarray:
    """An int64 column; DataError naming the row of the first value that is not an integer."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) <= _LIMIT)
        if ok.all():
            return arr.astype(np.int64)
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(path, f"{name} {arr[i]!r} is not an integer", row=rows[i])
    out = [_to_int(v) for v in arr.tolist()]
    for i, v in enumerate(out):
        if v is None:
            raise DataError(path, f"{name} {arr[i]!r} is not an integer", row=rows[i])
    return np.array(out, dtype=np.int64)


def _load_table(path: Path, seed: int) -> tuple[dict, list[int], list[int]]:
    """(columns, spike rows, trial rows) of a spike table: .npz file or folder of two CSVs."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # BadZipFile, zlib.error, EOFError, ValueError (pickled data)...
            raise DataError(path, f"cannot read as npz (pickled arrays are refused): {exc!r}") from None
        bad = [k for k in (*TABLE_SPIKES, *TABLE_TRIALS[1:3], "counts", "bin_us", "t0_us")
               if k in arrays and arrays[k].dtype.kind not in "iuf"]
        if bad:
            raise DataError(path, f"array {bad[0]!r} must hold numbers, not {arrays[bad[0]].dtype}")
        if "counts" in arrays:
            if "bin_us" not in arrays:
                raise DataError(path, "binned 'counts' need a 'bin_us' scalar")
            ev = counts_to_events(arrays["counts"], int(arrays["bin_us"]), seed)
            arrays["t_us"] = ev["t"] + int(arrays.get("t0_us", 0))
            arrays["unit"] = ev["x"]
            arrays.setdefault("n_units", np.int64(np.shape(arrays["counts"])[1]))
        missing = [k for k in TABLE_SPIKES + TABLE_TRIALS[1:] if k not in arrays]
        if missing:
            raise DataError(path, f"npz lacks arrays {missing} (has {sorted(arrays)})")
        n_sp, n_tr = len(arrays["t_us"]), len(arrays["t_start_us"])
        if "trial" not in arrays:
            arrays["trial"] = np.arange(n_tr)
        for k in ("unit",):
            if len(arrays[k]) != n_sp:
                raise DataError(path, f"{k} has {len(arrays[k])} rows, t_us has {n_sp}")
        for k in ("trial", "t_end_us", "label"):
            if len(arrays[k]) != n_tr:
                raise DataError(path, f"{k} has {len(arrays[k])} rows, t_start_us has {n_tr}")
        return arrays, list(range(n_sp)), list(range(n_tr))
    folder = path if path.is_dir() else path.parent
    spikes, sp_rows = _read_csv(folder / "spikes.csv", TABLE_SPIKES)
    trials, tr_rows = _read_csv(folder / "trials.csv", TABLE_TRIALS)
    return {**spikes, **trials, "_dir": folder}, sp_rows, tr_rows


def read_spike_table(path: str | Path, seed: int = 0, on_error: str = "raise") -> Trials:
    """Trials of a spike table (docs/formats.md): spikes ``t_us, unit`` and trials ``trial,
    t_start_us, t_end_us, label``; trial i holds the spikes with t_start <= t_us < t_end, t made
    relative to t_start. Errors name the file and the row (CSV: line number, header = 1; npz: index).
    """
    path = Path(path)
    cols, sp_rows, tr_rows = _load_table(path, seed)
    folder = cols.pop("_dir", None)
    sp_file = folder / "spikes.csv" if folder else path
    tr_file = folder / "trials.csv" if folder else path
    t = _ints(sp_file, "t_us", cols["t_us"], sp_rows)
    unit = _ints(sp_file, "unit", cols["unit"], sp_rows)
    bad = np.flatnonzero((unit < 0) | (unit > MAX_UNIT))
    if len(bad):
        raise DataError(sp_file, f"unit {unit[bad[0]]} is negative or > {MAX_UNIT}",
                        row=sp_rows[int(bad[0])])
    order = np.lexsort((unit, t))
    t, unit = t[order], unit[order]
    n_units = int(unit.max()) + 1 if len(unit) else 1
    if "n_units" in cols:
        given = np.asarray(cols["n_units"])
        if given.shape != () or given.dtype.kind not in "iu" or not n_units <= given <= MAX_UNIT + 1:
            raise DataError(sp_file, f"n_units {given!r} must be an integer scalar covering unit "
                            f"{n_units - 1} and <= {MAX_UNIT + 1}")
        n_units = int(given)
    start = _ints(tr_file, "t_start_us", cols["t_start_us"], tr_rows)
    end = _ints(tr_file, "t_end_us", cols["t_end_us"], tr_rows)
    skipped: list | None = [] if on_error == "skip" else None
    out = Trials([], [], [], n_units, [], skipped=[])
    for i in range(len(start)):
        if end[i] <= start[i]:
            _fail(skipped, tr_file, f"t_end_us {end[i]} <= t_start_us {start[i]}", tr_rows[i])
            continue
        i0, i1 = np.searchsorted(t, [start[i], end[i]])
        ev = np.empty(int(i1 - i0), dtype=SPIKES_DTYPE)
        ev["t"], ev["x"] = t[i0:i1] - start[i], unit[i0:i1]
        label = str(cols["label"][i]).strip()
        out.events.append(ev)
        out.labels.append(label or None)
        out.durations_us.append(int(end[i] - start[i]))
        out.where.append(f"{tr_file}:trial {str(cols['trial'][i]).strip()}")
    out.skipped = skipped or []
    if not out.events:
        raise DataError(tr_file, "table holds no (valid) trials")
    return out


def write_spike_table(path: str | Path, t_us, unit, t_start_us, t_end_us, labels,
                      trial=None, n_units: int | None = None) -> Path:
    """Write a spike table: ``path`` ending in ``.npz`` -> one npz file, else a folder holding
    ``spikes.csv`` and ``trials.csv``. Labels None are written as empty strings. ``n_units`` (npz
    only) fixes the sensor size when the highest units never fire. Atomic per file.
    """
    path = Path(path)
    labels = ["" if lab is None else str(lab) for lab in labels]
    trial = list(range(len(labels))) if trial is None else list(trial)
    cols = {"t_us": np.asarray(t_us, np.int64), "unit": np.asarray(unit, np.int64),
            "trial": np.asarray(trial), "t_start_us": np.asarray(t_start_us, np.int64),
            "t_end_us": np.asarray(t_end_us, np.int64), "label": np.asarray(labels, dtype=str)}
    if path.suffix == ".npz":
        if n_units is not None:
            cols["n_units"] = np.int64(n_units)

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **cols)
        atomic_write(path, write_npz)
        return path
    path.mkdir(parents=True, exist_ok=True)
    for name, keys in (("spikes.csv", TABLE_SPIKES), ("trials.csv", TABLE_TRIALS)):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(keys)
        w.writerows(zip(*(cols[k].tolist() for k in keys), strict=True))
        text = buf.getvalue()
        atomic_write(path / name, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return path


class _TrialsDataset(SampleDataset):
    """A dataset over a ``Trials`` (already parsed): events(i), label(i), duration_us(i) = trial length."""

    modality = "neural"
    layout = "spikes"

    def _setup(self, trials: Trials, classes: tuple[str, ...], keep: list[int] | None = None) -> None:
        self._trials = trials
        self.skipped = list(trials.skipped)
        idx = range(len(trials.events)) if keep is None else keep
        self._keys = list(idx)
        self._labels = [trials.labels[i] for i in idx]
        self.sensor_size = (trials.n_units,)
        self.classes = classes
        self._finish()

    def _read(self, key: int) -> np.ndarray:
        return self._trials.events[key].copy()  # callers may modify what they get

    def _key_path(self, key: int) -> str:
        return self._trials.where[key]

    def duration_us(self, i: int) -> int:
        return int(self._trials.durations_us[self._keys[i]])


def _find(root: Path, sub: str, pattern: str, session: str | None) -> Path:
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
                 on_error: str = "raise", limit: int | None = None) -> None:
        super().__init__(on_error=on_error, limit=limit)
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

    def __init__(self, root: str | Path, *, on_error: str = "raise", limit: int | None = None) -> None:
        super().__init__(on_error=on_error, limit=limit)
        self.file = _find(Path(root), "neural/stn", "*.mat", None)
        self._setup(read_stn(self.file), ("0", "1"))


class SpikeTableDataset(_TrialsDataset):
    """Your own recordings in the plain spike-table format (docs/formats.md): an ``.npz`` file or a
    folder holding ``spikes.csv`` and ``trials.csv``. Classes: the labels present, natural order.
    ``seed`` is used only when the table holds binned ``counts`` (spread by ``counts_to_events``).
    """

    name = "spike-table"

    def __init__(self, path: str | Path, *, seed: int = 0, on_error: str = "raise",
                 limit: int | None = None) -> None:
        super().__init__(on_error=on_error, limit=limit)
        self.file = Path(path)
        trials = read_spike_table(self.file, seed=seed, on_error=self.on_error)
        classes = tuple(sorted({lab for lab in trials.labels if lab is not None}, key=natural_key))
        self._setup(trials, classes)

