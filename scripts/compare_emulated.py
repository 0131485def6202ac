"""Emulated vs real data: statistics side by side and PNG pictures (N-MNIST, cochleas, cortex).

    python scripts/compare_emulated.py [--data ../shared/data] [--out build/compare] [--n 60]

Prints one table per modality (median [5%, 95%] over samples) and writes camera.png, cochlea.png
and cortex.png into --out (pictures are not committed; build/ is ignored by git).
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np

from streamlsm.config import data_root


def _pct(v) -> str:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "-"
    if len(v) == 1:
        return f"{v[0]:.1f}"
    lo, med, hi = np.percentile(v, [5, 50, 95])
    return f"{med:.1f} [{lo:.1f}, {hi:.1f}]"


def _table(title: str, rows: list[tuple[str, dict]]) -> None:
    cols = list(rows[0][1])
    print(f"\n== {title}")
    print(f"{'':34s}" + "".join(f"{c:>28s}" for c in cols))
    for name, stats in rows:
        print(f"{name:34s}" + "".join(f"{stats.get(c, '-'):>28s}" for c in cols))


def _frame(ev, h=34, w=34):
    img = np.zeros((h, w))
    np.add.at(img, (ev["y"], ev["x"]), np.where(ev["p"] > 0, 1.0, -1.0))
    return img


def camera(data: Path, n: int, out: Path, plt) -> dict:
    from streamlsm_sources.nmnist import read_bin

    from streamlsm.emulate.camera import record
    from streamlsm.emulate.glyphs import render

    files = sorted(glob.glob(str(data / "nmnist/Train/*/*.bin")))
    real = [read_bin(f) for f in files[:: max(1, len(files) // n)][:n]]
    rngs = [np.random.default_rng([7, i]) for i in range(n)]
    t0 = time.perf_counter()
    emu = record(np.stack([render(str(i % 10), r) for i, r in enumerate(rngs)]), rngs)
    secs = time.perf_counter() - t0

    def stats(evs):
        dur = [e["t"].max() * 1e-6 for e in evs]
        return {"events": _pct([len(e) for e in evs]),
                "events/s": _pct([len(e) / d for e, d in zip(evs, dur, strict=True)]),
                "active pixels": _pct([len(np.unique(e["y"] * 34 + e["x"])) for e in evs]),
                "ON fraction": _pct([100 * e["p"].mean() for e in evs]),
                "IEI median us": _pct([np.median(np.diff(e["t"])) for e in evs]),
                "duration ms": _pct([d * 1e3 for d in dur])}

    _table("event camera (ON fraction in %)", [("N-MNIST real (Train)", stats(real)),
                                               ("emulated digits", stats(emu))])
    fig, ax = plt.subplots(2, 6, figsize=(13, 4.6))
    for j in range(6):
        for i, (evs, name) in enumerate(((real, "real"), (emu, "emulated"))):
            img = _frame(evs[(j * len(evs) // 6 + j) % len(evs)])  # different digits
            lim = max(1.0, np.abs(img).max())
            ax[i, j].imshow(img, cmap="bwr", vmin=-lim, vmax=lim)
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
            ax[i, j].set_title(f"{name}")
    fig.suptitle("N-MNIST (top) vs emulated event camera (bottom): ON red, OFF blue")
    fig.tight_layout()
    fig.savefig(out / "camera.png", dpi=80)
    plt.close(fig)
    return {"camera_seconds_per_sample": secs / n}


def _coch_stats(evs, durs_s):
    return {"events/s": _pct([len(e) / d for e, d in zip(evs, durs_s, strict=True)]),
            "active channels": _pct([len(np.unique(e["x"])) for e in evs]),
            "channels >=1% events": _pct([(np.bincount(e["x"]) >= 0.01 * len(e)).sum() for e in evs]),
            "IEI median us": _pct([np.median(np.diff(e["t"])) for e in evs]),
            "IEI mean us": _pct([np.mean(np.diff(e["t"])) for e in evs]),
            "channel ISI median us": _pct([np.median(np.concatenate(
                [np.diff(e["t"][e["x"] == c]) for c in np.unique(e["x"])])) for e in evs])}


def cochlea(data: Path, n: int, out: Path, plt) -> dict:
    from scipy.io import wavfile
    from streamlsm_sources.aedat import read_aedat
    from streamlsm_sources.ntidigits import read_bs1

    from streamlsm.emulate import speech
    from streamlsm.emulate.cochlea import cochlea_events, normalise

    rows, pics = [], []
    nt = read_bs1(data / "ntidigits/NTIDIGITS_1.bs1")
    rows.append(("NTIDIGITS_1.bs1 real", _coch_stats([nt], [nt["t"].max() * 1e-6])))
    pics.append(("N-TIDIGITS real utterance", nt, 64))
    for f in sorted((data / "nas_cochlea").glob("*.aedat")):
        ev = read_aedat(f)
        rows.append((f"NAS {f.stem[:28]}", _coch_stats([ev], [ev["t"].max() * 1e-6])))
        if "sound_mono" in f.name:
            pics.append(("NAS real (sound, 32 ch)", ev, 32))
    t0 = time.perf_counter()
    talkers = speech.speakers(max(1, n // 11), np.random.default_rng(3))
    jobs = [(w, s, 100 * i + j) for i, s in enumerate(talkers) for j, w in enumerate(speech.WORDS.values())]
    audio = speech.say_many(jobs)
    evs = [cochlea_events(x, fs, np.random.default_rng(k)) for k, (x, fs) in enumerate(audio)]
    secs = (time.perf_counter() - t0) / len(evs)
    rows.append(("emulated eSpeak digits (22 kHz)", _coch_stats(evs, [len(x) / fs for x, fs in audio])))
    pics.append(("emulated eSpeak 'one'", evs[2], 64))
    wavs = sorted((data / "fsdd/recordings").glob("*.wav"))[:: max(1, 2500 // n)][:n]
    fe, fd = [], []
    for k, p in enumerate(wavs):
        fs, x = wavfile.read(p)
        x = normalise(x.astype(np.float32) / 32768.0)
        fe.append(cochlea_events(x, fs, np.random.default_rng(k)))
        fd.append(len(x) / fs)
    if fe:
        rows.append(("emulated FSDD recordings (8 kHz)", _coch_stats(fe, fd)))
        pics.append((f"emulated from FSDD {wavs[0].stem}", fe[0], 64))
    _table("silicon cochlea", rows)
    fig, ax = plt.subplots(1, len(pics), figsize=(4 * len(pics), 3.4))
    for a, (name, ev, nch) in zip(np.atleast_1d(ax), pics, strict=True):
        a.plot(ev["t"] / 1e3, ev["x"], "k.", ms=1 if len(ev) < 20000 else 0.2)
        a.set_xlim(0, min(ev["t"].max() / 1e3, 1200))
        a.set_ylim(-1, nch)
        a.set_xlabel("ms")
        a.set_ylabel("channel")
        a.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "cochlea.png", dpi=80)
    plt.close(fig)
    return {"cochlea_seconds_per_utterance": secs}


def cortex(data: Path, n: int, out: Path, plt) -> dict:
    from streamlsm_sources.neural import read_auditory_cortex, read_stn

    from streamlsm.emulate.cortex import Array, bin_counts

    def stats(trials, n_units):
        ev = np.concatenate([e["x"] for e in trials.events]) if hasattr(trials, "events") else None
        total_s = sum(trials.durations_us) * 1e-6
        rates = np.bincount(ev.astype(np.int64), minlength=n_units) / total_s
        pop = [len(e) / (d * 1e-6) for e, d in zip(trials.events, trials.durations_us, strict=True)]
        isi = np.concatenate([np.diff(e["t"][e["x"] == u]) for e in trials.events[:200]
                              for u in np.unique(e["x"])])
        cv = np.std(isi) / np.mean(isi) if len(isi) > 2 else np.nan
        return {"units": str(n_units), "unit rate Hz": _pct(rates[rates > 0]),
                "population events/s": _pct(pop), "trial s": f"{np.median(trials.durations_us) / 1e6:.2f}",
                "ISI CV": f"{cv:.2f}"}

    rows, real_pic = [], None
    for f in sorted((data / "neural/auditory_cortex").glob("*.csv")):
        tr = read_auditory_cortex(f)
        rows.append((f"auditory cortex {f.stem} real", stats(tr, tr.n_units)))
        real_pic = real_pic or (f.stem, tr)
    stn = data / "neural/stn/10_spikes-1.mat"
    if stn.is_file():
        tr = read_stn(stn)
        rows.append(("STN single unit real", stats(tr, tr.n_units)))

    class _T:
        pass

    arr, rng = Array(seed=0), np.random.default_rng(0)
    t0 = time.perf_counter()
    emu = _T()
    emu.events, emu.durations_us = [], []
    for i in range(n):
        arr.advance(rng)
        emu.events.append(arr.trial("abcdefghijklmnopqrstuvwxyz"[i % 26], rng))
        emu.durations_us.append(2_000_000)
    secs = (time.perf_counter() - t0) / n
    rows.append(("emulated handwriting (192 units)", stats(emu, 192)))
    _table("cortex", rows)
    counts = np.stack([bin_counts(e, 192, 2_000_000, 50_000) for e in emu.events]).sum(2)
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    e = emu.events[0]
    ax[0].plot(e["t"] / 1e3, e["x"], "k.", ms=0.6)
    ax[0].set_title("emulated trial, letter 'a' (192 units)", fontsize=9)
    ax[0].set_xlabel("ms")
    ax[1].plot(np.arange(40) * 50, counts.mean(0) / 0.05 / 192)
    ax[1].set_title("emulated mean unit rate (Hz), all trials", fontsize=9)
    ax[1].set_xlabel("ms")
    if real_pic:
        stem, tr = real_pic
        busy = [e for e in tr.events if len(e)][:20]
        for k, ev in enumerate(busy):
            ax[2].plot(ev["t"] / 1e3, ev["x"] + k * (tr.n_units + 2), "k.", ms=0.8)
        ax[2].set_title(f"real auditory cortex {stem}: 20 trials stacked", fontsize=9)
        ax[2].set_xlabel("ms")
    fig.tight_layout()
    fig.savefig(out / "cortex.png", dpi=80)
    plt.close(fig)
    return {"cortex_seconds_per_trial": secs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=data_root())
    ap.add_argument("--out", type=Path, default=Path("build/compare"))
    ap.add_argument("--n", type=int, default=60, help="samples per source for the statistics")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    timing = {}
    for part in (camera, cochlea, cortex):
        timing.update(part(args.data, args.n, args.out, plt))
    print(f"\npictures in {args.out}/: camera.png cochlea.png cortex.png")
    print(json.dumps({k: round(v, 4) for k, v in timing.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
