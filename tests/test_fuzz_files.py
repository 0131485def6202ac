"""Fuzzing every reader with truncated and corrupt files: a good result or a DataError, nothing else.

Each format starts from a valid file made by its writer (and, where the shared data is present, a
real recording); seeded mutations (cuts, bit flips, inserted/overwritten bytes, garbled text) are
read back. A returned result must be well formed (right dtype, times sorted, >= 0); anything but a
DataError naming the file is a failure. Counts are printed at the end of the module and written to
$STREAMLSM_FUZZ_FILES_SUMMARY (JSON) when that is set.
"""

from __future__ import annotations

import collections
import json
import os
import traceback
from pathlib import Path

import numpy as np
import pytest

from streamlsm.errors import DataError
from streamlsm.events import COCHLEA_DTYPE, DVS_DTYPE, SPIKES_DTYPE

COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    total = {k: {"tried": v["accepted"] + v["rejected"], "accepted": v["accepted"],
                 "rejected": v["rejected"], "rejected_with_position": v["with_position"]}
             for k, v in sorted(COUNTS.items())}
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("file fuzz summary: " + json.dumps(total))
    if path := os.environ.get("STREAMLSM_FUZZ_FILES_SUMMARY"):
        with open(path, "w") as fh:
            json.dump(total, fh, indent=1)


# ------------------------------------------------------------------ harness


def mutate(data: bytes, rng: np.random.Generator, *, text: bool = False) -> bytes:
    """One seeded corruption of ``data``."""
    raw = bytearray(data)
    op = int(rng.integers(6 if text else 5))
    if op == 0:  # truncate anywhere (incl. empty)
        del raw[int(rng.integers(len(raw) + 1)):]
    elif op == 1 and raw:  # bit flips
        for i in rng.integers(0, len(raw), int(rng.integers(1, 6))):
            raw[i] ^= 1 << int(rng.integers(8))
    elif op == 2:  # insert random bytes
        i = int(rng.integers(len(raw) + 1))
        raw[i:i] = rng.bytes(int(rng.integers(1, 8)))
    elif op == 3 and raw:  # overwrite a run with an extreme byte
        i = int(rng.integers(len(raw)))
        raw[i:i + int(rng.integers(1, 9))] = bytes([int(rng.choice([0, 0x7F, 0x80, 0xFF]))]) * 8
    elif op == 4 and raw:  # cut a slice out of the middle
        i = int(rng.integers(len(raw)))
        del raw[i:i + int(rng.integers(1, 12))]
    elif op == 5:  # text: swap in awkward tokens
        tokens = [b"", b"-1", b"nan", b"inf", b"1e400", b"3.5", b"x", b",", b"\n", b'"', b"\xff",
                  b"99999999999999999999", b"train", b"bogus"]
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(raw) + 1))
            raw[i:i + int(rng.integers(0, 4))] = tokens[int(rng.integers(len(tokens)))]
    return bytes(raw)


def _check_events(ev, dtype) -> None:
    assert isinstance(ev, np.ndarray) and ev.dtype == dtype, ev
    if len(ev):
        t = ev["t"]
        assert t.min() >= 0 and bool((np.diff(t) >= 0).all()), "times must be sorted and >= 0"


def run_cases(kind: str, path: Path, good: bytes, read, check, n: int, seed: int, *,
              text: bool = False, position: bool = True) -> None:
    """Write ``n`` mutations of ``good`` to ``path``, read each, classify; fail on anything else."""
    rng = np.random.default_rng(seed)
    failures = []
    for case in range(n):
        data = mutate(good, rng, text=text)
        path.write_bytes(data)
        try:
            out = read(path)
        except DataError as exc:
            COUNTS[kind]["rejected"] += 1
            if exc.offset is not None or exc.row is not None:
                COUNTS[kind]["with_position"] += 1
            if not exc.path.startswith(str(path)) and not exc.path.startswith(str(path.parent)):
                failures.append((case, f"DataError names {exc.path!r}, not the file"))
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            failures.append((case, f"{type(exc).__module__}.{type(exc).__name__}: {tb[:200]}"))
            continue
        try:
            check(out)
        except AssertionError as exc:
            failures.append((case, f"accepted a malformed result: {exc}"))
            continue
        COUNTS[kind]["accepted"] += 1
    if position:
        assert COUNTS[kind]["with_position"] > 0
    assert not failures, f"{len(failures)} of {n} {kind} cases: " + "; ".join(
        f"#{c}: {m}" for c, m in failures[:8])


# ------------------------------------------------------------------ binary record formats


def _dvs(n=300, seed=0, span=40_000):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, DVS_DTYPE)
    ev["t"] = np.sort(rng.integers(0, span, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
    return ev


def test_nmnist_bin(tmp_path):
    from streamlsm_sources.nmnist import read_bin, write_bin

    good = tmp_path / "good.bin"
    write_bin(good, _dvs(span=(1 << 23) + 40_000))  # long enough to need overflow markers
    run_cases("nmnist.bin", tmp_path / "fuzz.bin", good.read_bytes(),
              lambda p: read_bin(p, sensor=(34, 34)), lambda ev: _check_events(ev, DVS_DTYPE),
              2000, 1)


def test_ntidigits_bs1(tmp_path):
    from streamlsm_sources.ntidigits import read_bs1, write_bs1

    rng = np.random.default_rng(2)
    ev = np.zeros(300, COCHLEA_DTYPE)
    ev["t"], ev["x"], ev["p"] = np.sort(rng.integers(0, 1 << 22, 300)), rng.integers(0, 64, 300), 1
    good = tmp_path / "good.bs1"
    write_bs1(good, ev)
    run_cases("ntidigits.bs1", tmp_path / "fuzz.bs1", good.read_bytes(), read_bs1,
              lambda e: _check_events(e, COCHLEA_DTYPE), 2000, 2)


@pytest.mark.parametrize("addr_bytes, header", [(2, True), (4, True), (2, False)])
def test_aedat(tmp_path, addr_bytes, header):
    from streamlsm_sources.aedat import read_aedat, write_aedat

    rng = np.random.default_rng(3)
    n = 400
    good = tmp_path / "good.aedat"
    write_aedat(good, rng.integers(0, 4 * 64, n), np.sort(rng.integers(0, 1 << 31, n)),
                addr_bytes=addr_bytes, header=header)
    # with a header the reader learns the address width from it; without one, from options
    opts = {} if header else {"addr_bytes": addr_bytes}
    run_cases(f"aedat{addr_bytes}b{'' if header else '-raw'}", tmp_path / "fuzz_64ch_stereo.aedat",
              good.read_bytes(), lambda p: read_aedat(p, channels=64, **opts),
              lambda e: _check_events(e, COCHLEA_DTYPE), 1000, 3 + addr_bytes + header)


# ------------------------------------------------------------------ container formats


def test_ntidigits_hdf5(tmp_path):
    from streamlsm_sources.ntidigits import NTidigitsDataset, write_hdf5

    rng = np.random.default_rng(4)
    utt = {}
    for i, d in enumerate(("1", "2", "z", "o")):
        n = 50
        utt[f"man-s{i}-a-{d}"] = (rng.integers(0, 64, n), np.sort(rng.random(n)))
    good = tmp_path / "good.hdf5"
    write_hdf5(good, "train", utt)

    def read(p):
        ds = NTidigitsDataset(p, "train")
        return [ds.events(i) for i in range(len(ds))]

    def check(out):
        for ev in out:
            _check_events(ev, COCHLEA_DTYPE)

    run_cases("ntidigits.hdf5", tmp_path / "fuzz.hdf5", good.read_bytes(), read, check, 300, 5,
              position=False)


def test_stn_mat(tmp_path):
    import scipy.io
    from streamlsm_sources.neural import read_stn

    rng = np.random.default_rng(6)
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"train": (rng.random((6, 200)) < 0.05).astype(np.uint8),
                            "direction": rng.integers(0, 2, (6, 1)),
                            "t": np.arange(200)[None, :]})
    run_cases("stn.mat", tmp_path / "fuzz.mat", good.read_bytes(), read_stn, _check_trials, 400, 6,
              position=False)


def _check_trials(tr) -> None:
    assert len(tr.events) == len(tr.labels) == len(tr.durations_us) and tr.events
    for ev, dur in zip(tr.events, tr.durations_us, strict=True):
        _check_events(ev, SPIKES_DTYPE)
        assert dur > 0 and (not len(ev) or ev["t"][-1] < dur)
        assert not len(ev) or (ev["x"].min() >= 0 and ev["x"].max() < tr.n_units)


def _table(tmp_path, suffix):
    from streamlsm_sources.neural import write_spike_table

    rng = np.random.default_rng(7)
    t = np.sort(rng.integers(0, 60_000, 200))
    return write_spike_table(tmp_path / f"good{suffix}", t, rng.integers(0, 5, 200),
                             [0, 20_000, 40_000], [20_000, 40_000, 60_000], ["a", "b", None])


def test_spike_table_npz(tmp_path):
    from streamlsm_sources.neural import read_spike_table

    good = _table(tmp_path, ".npz")
    run_cases("spike_table.npz", tmp_path / "fuzz.npz", good.read_bytes(), read_spike_table,
              _check_trials, 600, 8, position=False)


@pytest.mark.parametrize("which", ["spikes.csv", "trials.csv"])
def test_spike_table_csv(tmp_path, which):
    from streamlsm_sources.neural import read_spike_table

    folder = _table(tmp_path, "")
    good = (folder / which).read_bytes()
    run_cases(f"spike_table.{which}", folder / which, good, lambda p: read_spike_table(p.parent),
              _check_trials, 800, 9 + len(which), text=True)


def test_auditory_cortex_csv(tmp_path):
    from streamlsm_sources.neural import read_auditory_cortex

    rng = np.random.default_rng(10)
    header = ["role", *map(str, range(500)), "sound_ID"]
    lines = [",".join(header)]
    for i in range(4):
        bins = np.where(rng.random(500) < 0.05, rng.integers(1, 4, 500), 0)
        lines.append(",".join([("train", "val", "test", "train")[i], *map(str, bins), str(i + 1)]))
    good = ("\n".join(lines) + "\n").encode()
    run_cases("auditory_cortex.csv", tmp_path / "fuzz.csv", good, read_auditory_cortex,
              _check_trials, 600, 10, text=True)


# ------------------------------------------------------------------ real recordings as seeds


def test_real_files_truncated_and_flipped(real_data, tmp_path):
    from streamlsm_sources.aedat import read_aedat
    from streamlsm_sources.nmnist import read_bin
    from streamlsm_sources.ntidigits import read_bs1

    seeds = [
        ("real.nmnist", next(iter(sorted((real_data / "nmnist/Train/0").glob("*.bin"))), None),
         "x.bin", lambda p: read_bin(p, sensor=(34, 34)), DVS_DTYPE),
        ("real.bs1", real_data / "ntidigits/NTIDIGITS_1.bs1", "x.bs1", read_bs1, COCHLEA_DTYPE),
        ("real.aedat", real_data / "nas_cochlea/sound_mono_32ch_ONOFF_addr2b_ts02.aedat",
         "sound_mono_32ch_ONOFF_addr2b_ts02.aedat", read_aedat, COCHLEA_DTYPE),
    ]
    for kind, src, name, read, dtype in seeds:
        if src is None or not src.is_file():
            pytest.skip(f"real file for {kind} is absent")
        run_cases(kind, tmp_path / name, src.read_bytes(), read,
                  lambda e, dtype=dtype: _check_events(e, dtype), 300, 11)


# ------------------------------------------------------------------ targeted: the position is right


def test_truncation_names_the_byte_offset(tmp_path):
    from streamlsm_sources.nmnist import read_bin, write_bin
    from streamlsm_sources.ntidigits import read_bs1

    good = tmp_path / "a.bin"
    write_bin(good, _dvs(10))
    data = good.read_bytes()
    for cut in (1, 3, 4):
        bad = tmp_path / "cut.bin"
        bad.write_bytes(data[:-cut])
        for read in (read_bin, read_bs1):
            with pytest.raises(DataError) as info:
                read(bad)
            assert info.value.offset == len(data) - 5 and info.value.path == str(bad)
    bad.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_bin(bad)
    with pytest.raises(DataError) as info:
        read_bin(tmp_path / "missing.bin")
    assert "missing.bin" in str(info.value)
