"""The plain spike-table format (docs/formats.md): spikes ``t_us, unit`` + trials, as npz or two CSVs."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from streamlsm.errors import DataError
from streamlsm.events import SPIKES_DTYPE

from ._common import atomic_write, natural_key
from ._trials import MAX_UNIT, Trials, TrialsDataset, counts_to_events
from ._trials import fail as _fail

__all__ = ["TABLE_SPIKES", "TABLE_TRIALS", "read_spike_table", "write_spike_table", "SpikeTableDataset"]

TABLE_SPIKES = ("t_us", "unit")
TABLE_TRIALS = ("trial", "t_start_us", "t_end_us", "label")


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


class SpikeTableDataset(TrialsDataset):
    """Your own recordings in the plain spike-table format (docs/formats.md): an ``.npz`` file or a
    folder holding ``spikes.csv`` and ``trials.csv``. Classes: the labels present, natural order.
    ``seed`` is used only when the table holds binned ``counts`` (spread by ``counts_to_events``).
    """

    name = "spike-table"

    def __init__(self, path: str | Path, *, seed: int = 0, on_error: str = "raise",
                 limit: int | None = None, transform=None) -> None:
        super().__init__(on_error=on_error, limit=limit, transform=transform)
        self.file = Path(path)
        trials = read_spike_table(self.file, seed=seed, on_error=self.on_error)
        classes = tuple(sorted({lab for lab in trials.labels if lab is not None}, key=natural_key))
        self._setup(trials, classes)
