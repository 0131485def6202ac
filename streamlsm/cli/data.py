"""`streamlsm data`: make emulated data sets, turn recordings into cochlea events, inspect data."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "cmd_make", "cmd_cochlea", "cmd_info", "KINDS"]

KINDS = ("camera-digits", "camera-letters", "cochlea-digits", "cortex-letters")
_TOTAL = {"camera-digits": 10, "camera-letters": 26, "cochlea-digits": 11, "cortex-letters": 26}


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="make emulated data sets, convert recordings, inspect data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    m = dsub.add_parser("make", help="generate an emulated data set in the real data set's format")
    m.add_argument("kind", choices=KINDS)
    m.add_argument("--out", required=True, type=Path, help="folder to create (must be empty)")
    m.add_argument("--n-per-class", type=int, default=100, help="samples per class (train + test)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--counts", action="store_true", help="cortex: also write 10 ms binned counts")
    m.add_argument("--images", choices=("fonts", "sklearn"), default="fonts",
                   help="camera-digits: font glyphs, or scikit-learn's real 8x8 handwritten digits")
    m.set_defaults(func=cmd_make)

    c = dsub.add_parser("cochlea", help="WAV recordings -> silicon-cochlea events (n-tidigits.hdf5)")
    c.add_argument("wav_dir", type=Path, help="folder of <digit>_<speaker>_<index>.wav files")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_cochlea)

    i = dsub.add_parser("info", help="counts per class, event statistics, optional PNG picture")
    i.add_argument("path", type=Path, help="N-MNIST tree, n-tidigits.hdf5 (or its folder), spike "
                   "table .npz, or a folder made by `data make`")
    i.add_argument("--split", default="train")
    i.add_argument("--png", type=Path, default=None, help="save a picture of a few samples")
    i.add_argument("--limit", type=int, default=500, help="samples used for the statistics")
    i.set_defaults(func=cmd_info)


def _emulated():
    """The emulated-data plug-in module (found through the emulator entry points; streamlsm never
    imports the plug-in packages by name)."""
    import sys

    from ..plugins import EMULATOR_GROUP, load

    maker = load(EMULATOR_GROUP, "camera-digits")
    return sys.modules[maker.__module__]


def _source(name: str):
    from ..plugins import SOURCE_GROUP, load

    return load(SOURCE_GROUP, name)


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", leave=True)


def cmd_make(args: argparse.Namespace) -> int:
    make = _emulated().make
    total = _TOTAL[args.kind] * args.n_per_class
    options = {"counts": True} if args.counts and args.kind == "cortex-letters" else {}
    if args.images != "fonts":
        options["images"] = args.images
    with _bar(total, args.kind) as bar:
        out = make(args.kind, args.out, args.n_per_class, args.seed, bar.update, **options)
    print(out)
    return 0


def cmd_cochlea(args: argparse.Namespace) -> int:
    cochlea_from_wavs = _emulated().cochlea_from_wavs
    n = len(list(Path(args.wav_dir).glob("*.wav"))) if Path(args.wav_dir).is_dir() else 0
    with _bar(n, "cochlea") as bar:
        out = cochlea_from_wavs(args.wav_dir, args.out, seed=args.seed, progress=bar.update)
    print(out)
    return 0


def _open(path: Path, split: str):
    """A dataset for ``path``, guessing its format from what it holds."""
    from ..errors import DataError

    path = Path(path)
    if path.suffix == ".npz" or (path / f"{split}.npz").is_file():
        return _source("spike-table")(path if path.suffix == ".npz" else path / f"{split}.npz")
    if path.suffix in (".hdf5", ".h5") or (path / "n-tidigits.hdf5").is_file():
        return _source("ntidigits")(path, split)
    if (path / "Train").is_dir() or (path / "Test").is_dir():
        return _emulated().CameraTreeDataset(path, split)
    found = _by_probe(path)
    if found is not None:
        return found
    raise DataError(path, "not a data set `streamlsm data info` knows (N-MNIST tree, "
                    "n-tidigits.hdf5, spike table .npz, camera files .aedat4 .raw .dat)")


def _by_probe(path: Path):
    """A dataset from the first source plug-in whose class says it ``accepts(path)`` (the camera
    file readers: AEDAT 4, EVT 2.0 / 3.0 RAW, DAT), else None."""
    from importlib.metadata import entry_points

    from ..plugins import SOURCE_GROUP

    for ep in entry_points(group=SOURCE_GROUP):
        try:
            cls = ep.load()
        except ImportError:
            continue
        accepts = getattr(cls, "accepts", None)
        if callable(accepts) and accepts(path):
            return cls(path)
    return None


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import ConfigError

    if args.limit < 1:
        raise ConfigError("limit", f"must be >= 1 sample, got {args.limit}")
    ds = _open(args.path, args.split)
    labels = ds.labels
    per_class: dict[str, int] = {}
    for lab in labels:
        per_class[str(lab)] = per_class.get(str(lab), 0) + 1
    print(f"{type(ds).__name__}: {len(ds)} samples, layout {ds.layout}, sensor {ds.sensor_size}")
    print("per class: " + ", ".join(f"{k}={v}" for k, v in per_class.items()))
    step = max(1, len(ds) // max(1, args.limit))
    idx = list(range(0, len(ds), step))[: args.limit]
    n_ev, dur, chans, iei = [], [], [], []
    for i in idx:
        ev = ds.events(i)
        n_ev.append(len(ev))
        dur.append(ds.duration_us(i))
        chans.append(len(np.unique(ev["x"])) if ds.layout != "dvs" else
                     len(np.unique(ev["y"].astype(np.int64) * 256 + ev["x"])))
        if len(ev) > 1:
            iei.append(np.median(np.diff(ev["t"])))
    n_ev, dur = np.asarray(n_ev, float), np.asarray(dur, float)
    rate = n_ev / (dur * 1e-6)
    what = "active pixels" if ds.layout == "dvs" else "active channels/units"
    print(f"over {len(idx)} samples (median [5%, 95%]):")
    for name, v in (("events", n_ev), ("duration ms", dur / 1e3), ("events/s", rate),
                    (what, np.asarray(chans, float)), ("median inter-event us", np.asarray(iei))):
        if len(v):
            lo, med, hi = np.percentile(v, [5, 50, 95])
            print(f"  {name:>24}: {med:10.1f}  [{lo:.1f}, {hi:.1f}]")
    if args.png:
        _picture(ds, args.png)
        print(f"picture: {args.png}")
    return 0


def _picture(ds, png: Path, n: int = 6) -> None:
    try:
        import matplotlib
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("png", "pictures need matplotlib: pip install 'streamlsm[train]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    picks = list(range(0, len(ds), max(1, len(ds) // n)))[:n]
    fig, axes = plt.subplots(1, len(picks), figsize=(2.6 * len(picks), 2.8), squeeze=False)
    for ax, i in zip(axes[0], picks, strict=False):
        ev = ds.events(i)
        if ds.layout == "dvs":
            w, h = ds.sensor_size[0], ds.sensor_size[1]
            img = np.zeros((h, w))
            np.add.at(img, (ev["y"], ev["x"]), np.where(ev["p"] > 0, 1.0, -1.0))
            lim = max(1.0, np.abs(img).max())
            ax.imshow(img, cmap="bwr", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.plot(ev["t"] / 1e3, ev["x"], "k.", ms=1)
            ax.set_xlabel("ms")
            ax.set_ylabel("channel" if ds.layout == "cochlea" else "unit")
        ax.set_title(f"{ds.label(i)}")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
