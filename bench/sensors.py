"""Camera-file benchmark: read speed of the real AEDAT 4, EVT 3.0, EVT 2.0 and DAT files, and the peak
memory of streaming a >= 1 GB EVT 3.0 recording built from the real one.

    python bench/sensors.py [--quick] [--gb 1.0]

Each reader is timed through its dataset's ``chunks`` (decoder + conversion to the DVS layout +
order and sensor-bound checks), best of several repeats, on the real files in
``$STREAMLSM_DATA/sensors``; beside it, in the same run, the decoder alone (expelliarmus / aedat,
``*_decoder_events_per_s``) and the plain file read speed (``file_read_mb_per_s``, page cache) as
references for ratios. The large file is the real ``evt3_sample.raw`` header followed by its body
repeated until it passes ``--gb`` GiB (EVT 3.0 time-high words wrap at each seam, which the
decoder takes as the 24-bit time overflow, so time keeps increasing); it is written to a
temporary folder and deleted after. A fresh child process streams it through ``replay.schedule``
(100 ms packets, no socket) and reports its peak RSS (``rss_mb_1gb_evt3``: ru_maxrss, the whole
child's high-water mark, imports included; goal < 200 MB), its RSS just before streaming and the
largest RSS sampled while streaming. ``--quick`` repeats less and streams the big file through ``chunks`` only.
The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlsm.config import data_root  # noqa: E402

FILES = {"aedat4": "dvs_sample.aedat4", "evt3": "evt3_sample.raw", "evt2": "evt2_sample.raw",
         "dat": "ncars_sample.dat"}


def _best(fn, repeats: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


def _dataset(kind: str, path: Path):
    from streamlsm_sources.aedat4 import AEDAT4Dataset
    from streamlsm_sources.prophesee import DATDataset, EVT2Dataset, EVT3Dataset

    cls = {"aedat4": AEDAT4Dataset, "evt3": EVT3Dataset, "evt2": EVT2Dataset, "dat": DATDataset}[kind]
    return cls(path)


def _decoder_only(kind: str, path: Path) -> int:
    if kind == "aedat4":
        import aedat

        return sum(len(p["events"]) for p in aedat.Decoder(str(path)) if "events" in p)
    from expelliarmus import Wizard

    enc = {"evt3": "evt3", "evt2": "evt2", "dat": "dat"}[kind]
    return sum(len(c) for c in Wizard(encoding=enc, fpath=str(path), chunk_size=1 << 20).read_chunk())


def read_speeds(folder: Path, repeats: int) -> dict:
    out = {}
    for kind, name in FILES.items():
        path = folder / name
        ds = _dataset(kind, path)
        secs, n = _best(lambda ds=ds: sum(len(c) for c in ds.chunks(0)), repeats)
        out[f"{kind}_events_per_s"] = round(n / secs, 1)
        out[f"{kind}_events"] = n
        dsecs, dn = _best(lambda kind=kind, path=path: _decoder_only(kind, path), repeats)
        assert dn == n, (kind, dn, n)
        out[f"{kind}_decoder_events_per_s"] = round(dn / dsecs, 1)
        out[f"{kind}_vs_decoder"] = round(dsecs / secs, 3)
        out[f"{kind}_file_mb"] = round(path.stat().st_size / 2**20, 3)
    return out


def file_read_speed(path: Path, repeats: int) -> float:
    def read() -> int:
        with open(path, "rb", buffering=0) as f:
            n = 0
            while chunk := f.read(1 << 24):
                n += len(chunk)
        return n

    secs, n = _best(read, repeats)
    return n / secs / 2**20


def build_big_evt3(src: Path, dst: Path, gib: float) -> int:
    from streamlsm_sources.prophesee import read_header

    size, _ = read_header(src)
    data = src.read_bytes()
    header, body = data[:size], data[size:]
    target = int(gib * 2**30)
    with open(dst, "wb") as f:
        f.write(header)
        written = len(header)
        block = body * 64
        while written < target:
            f.write(block)
            written += len(block)
    return written


def _child(path: str, mode: str) -> None:
    """Stream the big file in this fresh process; print one JSON line (events, RSS)."""
    from streamlsm_sources.prophesee import EVT3Dataset

    from streamlsm.stream.replay import ReplayConfig, schedule

    rss_before = _rss_now_mb()
    ds = EVT3Dataset(path)
    t0 = time.perf_counter()
    n = packets = 0
    sampled = rss_before
    if mode == "schedule":
        for _, pkt in schedule(ds, "cam", ReplayConfig(packet_us=100_000, speed="max")):
            n += len(pkt.events)
            packets += 1
            if packets % 256 == 0:
                sampled = max(sampled, _rss_now_mb())
    else:
        for chunk in ds.chunks(0):
            n += len(chunk)
            sampled = max(sampled, _rss_now_mb())
    secs = time.perf_counter() - t0
    print(json.dumps({"events": n, "packets": packets, "seconds": round(secs, 2),
                      "events_per_s": round(n / secs, 1), "rss_mb_before": round(rss_before, 1),
                      "rss_mb_sampled_max": round(sampled, 1),
                      "rss_mb_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def _rss_now_mb() -> float:
    """This process's resident set now (VmRSS), in MiB (the peak, ru_maxrss, never goes down)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--gb", type=float, default=1.0, help="size of the streamed EVT 3.0 file (GiB)")
    ap.add_argument("--child", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    folder = data_root() / "sensors"
    if not (folder / FILES["evt3"]).is_file():
        print(json.dumps({"skipped": f"real sensor files not found in {folder.resolve()}"}))
        return
    repeats = 3 if args.quick else 10
    out: dict = {"load_avg_1m": round(os.getloadavg()[0], 2), "quick": args.quick}
    out.update(read_speeds(folder, repeats))
    mode = "chunks" if args.quick else "schedule"
    with tempfile.TemporaryDirectory(prefix="streamlsm-bench-sensors-") as tmp:
        big = Path(tmp) / "big_evt3.raw"
        t0 = time.perf_counter()
        size = build_big_evt3(folder / FILES["evt3"], big, args.gb)
        out["big_file_gib"] = round(size / 2**30, 3)
        out["big_file_write_s"] = round(time.perf_counter() - t0, 2)
        out["file_read_mb_per_s"] = round(file_read_speed(big, 1 if args.quick else 3), 1)
        res = subprocess.run([sys.executable, __file__, "--child", str(big), mode],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"streaming child failed: {res.stderr[-2000:]}")
        child = json.loads(res.stdout.strip().splitlines()[-1])
    out["rss_mb_1gb_evt3"] = child["rss_mb_peak"]
    out["rss_mb_before_streaming"] = child["rss_mb_before"]
    out["rss_mb_streaming_sampled_max"] = child["rss_mb_sampled_max"]
    out["big_evt3_events"] = child["events"]
    out["big_evt3_events_per_s"] = child["events_per_s"]
    out["big_evt3_stream_s"] = child["seconds"]
    out["big_evt3_path"] = mode
    out["big_evt3_mb_per_s"] = round(size / 2**20 / child["seconds"], 1)
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
