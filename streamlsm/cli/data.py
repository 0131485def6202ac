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

    m = dsub.add_parser("make", help="generate an emulated data set in the real data set's format",
                        description="Generate an emulated data set on disk in the format of the real "
                        "one it stands in for (camera-digits/-letters: the N-MNIST Train|Test/<class>/"
                        "*.bin tree; cochlea-digits: n-tidigits.hdf5; cortex-letters: spike tables), "
                        "so every reader, `replay` and the experiments run on it unchanged.")
    m.add_argument("kind", choices=KINDS)
    m.add_argument("--out", required=True, type=Path, help="folder to create (must be empty)")
    m.add_argument("--n-per-class", type=int, default=100, help="samples per class (train + test)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--counts", action="store_true", help="cortex: also write 10 ms binned counts")
    m.add_argument("--images", choices=("fonts", "sklearn"), default="fonts",
                   help="camera-digits: font glyphs, or scikit-learn's real 8x8 handwritten digits")
    m.set_defaults(func=cmd_make)

    c = dsub.add_parser("cochlea", help="WAV recordings -> silicon-cochlea events (n-tidigits.hdf5)",
                        description="Turn speech recordings (<digit>_<speaker>_<index>.wav, e.g. the "
                        "Free Spoken Digit Dataset) into silicon-cochlea events with the cochlea "
                        "emulator, written as n-tidigits.hdf5 (read by the 'ntidigits' source).")
    c.add_argument("wav_dir", type=Path, help="folder of <digit>_<speaker>_<index>.wav files")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_cochlea)

    i = dsub.add_parser("info", help="counts per class, event statistics, optional PNG picture",
                        description="Counts per class, event statistics and (--png) a picture with "
                        "one panel per class of any data set a reader knows: the format is guessed "
                        "from PATH (N-MNIST tree or one .bin, n-tidigits.hdf5 or .bs1, NAS .aedat, "
                        "auditory-cortex .csv, STN .mat, spike table .npz, a `data make` folder) or "
                        "named with --dataset (any source plug-in: " + _source_names() + ").")
    i.add_argument("path", type=Path, help="data set root folder or file")
    i.add_argument("--dataset", default=None, help="read PATH with this source plug-in instead of "
                   "guessing the format")
    i.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="data set option with --dataset (repeatable)")
    i.add_argument("--split", default="train")
    i.add_argument("--png", type=Path, default=None, help="save a picture of a few samples")
    i.add_argument("--limit", type=int, default=500, help="samples used for the statistics")
    i.set_defaults(func=cmd_info)


def _source_names() -> str:
    from ..plugins import SOURCE_GROUP, available

    return ", ".join(sorted(available(SOURCE_GROUP)))


def _emulated():
    """The emulated-data plug-in module (entry point ``streamlsm.data: emulated``; streamlsm never
    imports the plug-in packages by name)."""
    from ..plugins import DATA_GROUP, load

    return load(DATA_GROUP, "emulated")


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


class _Only:
    """The samples of a dataset that come from one file (data info on a single file)."""

    def __init__(self, ds, file: Path) -> None:
        want = str(Path(file).resolve())
        self.ds = ds
        self.ids = [i for i in range(len(ds)) if str(Path(ds._key_path(ds._keys[i])).resolve()) == want]
        if not self.ids:
            from ..errors import DataError

            raise DataError(file, f"not one of the samples {type(ds).__name__} lists")
        self.name, self.modality, self.layout = ds.name, ds.modality, ds.layout
        self.sensor_size = ds.sensor_size
        self.labels = [ds.label(i) for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def label(self, i: int):
        return self.ds.label(self.ids[i])

    def events(self, i: int):
        return self.ds.events(self.ids[i])

    def duration_us(self, i: int) -> int:
        return int(self.ds.duration_us(self.ids[i]))


def _has(path: Path, pattern: str) -> bool:
    return path.is_dir() and next(path.glob(pattern), None) is not None


def _open(path: Path, split: str, dataset: str | None = None, options: dict | None = None):
    """A dataset for ``path``: read by the named source plug-in, or guessing its format."""
    from ..errors import DataError
    from .replay import open_dataset

    path = Path(path)
    if dataset:
        return open_dataset(dataset, str(path), dict(options or {}))
    if not path.exists():
        raise DataError(path, "no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".npz" or (path / f"{split}.npz").is_file():
        return _source("spike-table")(path if suffix == ".npz" else path / f"{split}.npz")
    if suffix in (".hdf5", ".h5") or (path / "n-tidigits.hdf5").is_file():
        return _source("ntidigits")(path, split)
    if suffix == ".bs1" or _has(path, "*.bs1"):
        return _source("ntidigits")(path)
    if suffix == ".aedat":
        return _Only(_source("nas")(path.parent), path)
    if _has(path, "*.aedat") or _has(path / "nas_cochlea", "*.aedat"):
        return _source("nas")(path)
    if suffix == ".csv" or _has(path, "*.csv") or _has(path / "neural" / "auditory_cortex", "*.csv"):
        return _source("auditory-cortex")(path)
    if suffix == ".mat" or _has(path, "*.mat") or _has(path / "neural" / "stn", "*.mat"):
        return _source("stn")(path)
    if suffix == ".bin":  # one N-MNIST sample, in its Train|Test/<digit>/ folder
        tree, split_dir = path.parents[2], path.parent.parent.name.lower()
        if split_dir in ("train", "test"):
            return _Only(_source("nmnist")(tree, split_dir), path)
        raise DataError(path, "a single .bin is read in its N-MNIST tree: <root>/Train|Test/<digit>/")
    if (path / "Train").is_dir() or (path / "Test").is_dir():
        return _emulated().CameraTreeDataset(path, split)
    found = _by_probe(path)
    if found is not None:
        return found
    raise DataError(path, "not a data set `streamlsm data info` knows (N-MNIST tree or .bin, "
                    "n-tidigits.hdf5 or .bs1, NAS .aedat, auditory-cortex .csv, STN .mat, spike "
                    "table .npz, camera files .aedat4 .raw .dat, .nwb); name its reader with "
                    "--dataset NAME")


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
    from .replay import parse_options

    ds = _open(args.path, args.split, args.dataset, parse_options(args.option))
    labels = [ds.label(i) for i in range(len(ds))]
    per_class: dict[str, int] = {}
    for lab in labels:
        key = "unlabelled" if lab is None else str(lab)
        per_class[key] = per_class.get(key, 0) + 1
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
        panels, what = _picture(ds, args.png, f"{Path(args.path).name} ({type(ds).__name__})")
        print(f"picture: {args.png} ({panels} panels, {what})")
    return 0


def _picks(ds, n_unlabelled: int = 6, max_classes: int = 40) -> tuple[list[int], str]:
    """One sample per class (the first of each, classes in order), or a few of an unlabelled set."""
    import re

    first: dict[str, int] = {}
    for i in range(len(ds)):
        lab = ds.label(i)
        if lab is not None and str(lab) not in first:
            first[str(lab)] = i
    if not first:
        picks = list(range(0, len(ds), max(1, len(ds) // n_unlabelled)))[:n_unlabelled]
        return picks, f"{len(picks)} of {len(ds)} unlabelled samples"
    order = [str(c) for c in getattr(ds, "classes", ()) if str(c) in first]
    rest = sorted(set(first) - set(order),
                  key=lambda c: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", c)])
    classes = (order + rest)[:max_classes]
    more = f" (first {max_classes} of {len(first)})" if len(first) > max_classes else ""
    return [first[c] for c in classes], f"one sample per class, {len(classes)} classes{more}"


def _picture(ds, png: Path, title: str = "") -> tuple[int, str]:
    """Save a picture, one panel per class; (number of panels, what they show)."""
    try:
        import matplotlib
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("png", "pictures need matplotlib: pip install 'streamlsm[train]'") from None
    matplotlib.use("Agg")
    import math

    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    picks, what = _picks(ds)
    ncols = min(len(picks), 6)
    nrows = math.ceil(len(picks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols + 0.4, 2.6 * nrows + 0.6),
                             squeeze=False, layout="constrained")
    on, off = "#d62728", "#1f77b4"
    polar = False
    n_events = {}
    for ax, i in zip(axes.flat, picks, strict=False):
        ev = ds.events(i)
        n_events[i] = len(ev)
        lab = ds.label(i)
        has_p = "p" in ev.dtype.names and len(np.unique(ev["p"])) > 1
        polar |= has_p
        if ds.layout == "dvs":
            w, h = ds.sensor_size[0], ds.sensor_size[1]
            img = np.ones((h, w, 3))
            cnt_on = np.zeros((h, w))
            cnt_off = np.zeros((h, w))
            np.add.at(cnt_on, (ev["y"][ev["p"] > 0], ev["x"][ev["p"] > 0]), 1)
            np.add.at(cnt_off, (ev["y"][ev["p"] <= 0], ev["x"][ev["p"] <= 0]), 1)
            lim = max(1.0, float(np.percentile(np.maximum(cnt_on, cnt_off), 99)))
            a_on, a_off = np.clip(cnt_on / lim, 0, 1), np.clip(cnt_off / lim, 0, 1)
            for c in range(3):  # white background, ON red, OFF blue (mixed: purple)
                img[..., c] -= a_on * (1 - matplotlib.colors.to_rgb(on)[c]) + \
                    a_off * (1 - matplotlib.colors.to_rgb(off)[c])
            ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            shown = ev[:: max(1, len(ev) // 20_000)]  # a raster of 20,000 dots says as much
            t, ev = shown["t"] / 1e3, shown
            if has_p:
                ax.plot(t[ev["p"] > 0], ev["x"][ev["p"] > 0], ".", color=on, ms=1.5)
                ax.plot(t[ev["p"] <= 0], ev["x"][ev["p"] <= 0], ".", color=off, ms=1.5)
            else:
                ax.plot(t, ev["x"], "k.", ms=1.5)
            ax.set_xlabel("time (ms)", fontsize=8)
            ax.set_ylabel("channel" if ds.layout == "cochlea" else "unit", fontsize=8)
            ax.tick_params(labelsize=7)
        title = f"class {lab}" if lab is not None else f"sample {i}"
        ax.set_title(f"{title}\n{int(n_events[i]):,} events", fontsize=9)
    for ax in list(axes.flat)[len(picks):]:
        ax.axis("off")
    handles = [Patch(color=on, label="ON (p=1)"), Patch(color=off, label="OFF (p=0)")] if polar \
        else [Patch(color="k", label="event (no polarity)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8,
               frameon=False)
    fig.suptitle(f"{title or getattr(ds, 'name', '')}: {what}", fontsize=10)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return len(picks), what
