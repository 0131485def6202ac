"""Calibrate the reservoir presets' weight scales on real samples (prints JSON; values go to presets.py).

python bench/reservoir_calibrate.py [--target 0.06] [--only nmnist,ntidigits,...]
Data: $STREAMLSM_DATA or ../shared/data (N-MNIST, NTIDIGITS_1.bs1, FSDD WAVs through the cochlea
emulator, auditory cortex CSVs);
letters are rate-coded emulated glyph images (no real letter data is stored).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from streamlsm.config import data_root
from streamlsm.events import COCHLEA_DTYPE
from streamlsm.reservoir import preset
from streamlsm.reservoir.calibrate import calibrate, rate_code


def nmnist(root, n=50, seed=0):
    from streamlsm_sources.nmnist import NMNISTDataset
    ds = NMNISTDataset(root / "nmnist", split="train")
    idx = np.random.default_rng(seed).choice(len(ds), n, replace=False)
    return [ds.events(int(i)) for i in idx], [ds.duration_us(int(i)) for i in idx]


def read_bs1(path):
    """1-D binary spike file: 5 bytes/event, 16-bit BE channel, bit 7 polarity, 23-bit us time."""
    raw = np.fromfile(path, np.uint8).reshape(-1, 5).astype(np.int64)
    ev = np.zeros(len(raw), COCHLEA_DTYPE)
    ev["x"] = (raw[:, 0] << 8) | raw[:, 1]
    ev["p"] = raw[:, 2] >> 7
    ev["t"] = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return ev[np.argsort(ev["t"], kind="stable")]


def ntidigits(root):
    ev = read_bs1(root / "ntidigits" / "NTIDIGITS_1.bs1")
    return [ev], [int(ev["t"][-1]) + 1]


def cochlea(root, n=20, seed=0):
    """The real N-TIDIGITS utterance and emulated cochlea events of real FSDD recordings (the
    cochlea preset serves emulated and N-TIDIGITS-like sensors; NAS recordings fire ~100x more and
    need their own calibration)."""
    from scipy.io import wavfile

    from streamlsm.emulate.cochlea import cochlea_events
    samples, durs = ntidigits(root)
    wavs = sorted((root / "fsdd" / "recordings").glob("*.wav"))
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(wavs), n, replace=False):
        fs, audio = wavfile.read(wavs[int(i)])
        ev = cochlea_events(audio.astype(np.float64) / 32768.0, fs, np.random.default_rng(int(i)))
        samples.append(ev)
        durs.append(int(round(len(audio) * 1e6 / fs)))
    return samples, durs


def neural(root, per_session=15, seed=0):
    from streamlsm_sources.neural import AuditoryCortexDataset
    samples, durs = [], []
    rng = np.random.default_rng(seed)
    for s in ("D_A_I", "D_A_II", "D_A_III", "D_E_I"):
        ds = AuditoryCortexDataset(root / "neural" / "auditory_cortex", role="train", session=s)
        for i in rng.choice(len(ds), per_session, replace=False):
            samples.append(ds.events(int(i)))
            durs.append(ds.duration_us(int(i)))
    return samples, durs


def letters(n=30, seed=0):
    from streamlsm.emulate.glyphs import LETTERS, render
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        img = render(LETTERS[i % len(LETTERS)], rng)
        samples.append(rate_code(img, steps=50, step_us=1000, spikes_per_pixel=20, seed=seed + i))
    return samples, [50_000] * n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", type=float, default=0.06)
    ap.add_argument("--only", default="nmnist,ntidigits,cochlea,neural,letters")
    args = ap.parse_args(argv)
    root = data_root()
    loaders = {"nmnist": lambda: nmnist(root), "ntidigits": lambda: ntidigits(root),
               "cochlea": lambda: cochlea(root), "neural": lambda: neural(root), "letters": letters}
    result = {}
    for name in args.only.split(","):
        t = time.perf_counter()
        samples, durs = loaders[name]()
        cfg, rep = calibrate(preset(name, weight_scale=1.0, rec_scale=1.0), samples, durs, target=args.target)
        rep.pop("trace")
        rep.update(samples=len(samples), seconds=round(time.perf_counter() - t, 2))
        result[name] = rep
        print(name, rep, file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
