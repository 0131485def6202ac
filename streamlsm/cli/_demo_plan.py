"""What `streamlsm demo` runs on: the default emulated data + bundle, or real N-MNIST with an in-process model."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import data_root, default_cache_dir, to_dict
from ..errors import StreamLSMError
from ..model.bundle import Bundle
from ..plugins import DATA_GROUP, SOURCE_GROUP, load

__all__ = ["Plan", "Subset", "default_plan", "nmnist_plan", "say"]

SEEN = [str(d) for d in range(8)]
UNSEEN = ["8", "9"]
SPOKEN = {"z": "0"}


def say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


class heartbeat:
    """Context manager: a '... still <what> (N s)' line every ``every_s`` while the block runs."""

    def __init__(self, what: str, every_s: float = 10.0) -> None:
        self.what, self.every_s = what, every_s

    def __enter__(self) -> heartbeat:
        import threading

        self.t0, self.stop = time.monotonic(), threading.Event()

        def beat() -> None:
            while not self.stop.wait(self.every_s):
                say(f"  ... still {self.what} ({time.monotonic() - self.t0:.0f} s)")

        self.thread = threading.Thread(target=beat, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        if exc[0] is None:
            say(f"  done {self.what} in {time.monotonic() - self.t0:.1f} s")


class Subset:
    """Some samples of a dataset, in a given order (what the replayer streams)."""

    def __init__(self, ds: Any, ids: list[int]) -> None:
        self.ds, self.ids = ds, list(ids)
        self.name, self.modality, self.layout = ds.name, ds.modality, ds.layout

    def __len__(self) -> int:
        return len(self.ids)

    def label(self, i: int):
        return self.ds.label(self.ids[i])

    def events(self, i: int) -> np.ndarray:
        return self.ds.events(self.ids[i])

    def duration_us(self, i: int) -> int:
        return int(self.ds.duration_us(self.ids[i]))


@dataclass
class Plan:
    bundle: Bundle
    test: Subset
    support: dict[str, tuple[str, list, list]]   # label -> (modality, event arrays, durations)
    unseen: list[str]
    notes: list[str] = field(default_factory=list)


def _by_class(ds: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in range(len(ds)):
        out.setdefault(str(ds.label(i)), []).append(i)
    return out


def _interleave(groups: list[list[int]], rng: np.random.Generator) -> list[int]:
    ids = [i for g in groups for i in g]
    return [int(i) for i in rng.permutation(ids)]


DEMO_KINDS = ("camera-digits", "cochlea-digits")


def default_plan(limit: int, seed: int) -> Plan:
    """Emulated camera digits streamed; prototypes of all ten classes from emulated spoken digits."""
    from ..experiments import default_bundle

    ensure_default_data = load(DATA_GROUP, "emulated").ensure_default_data  # the plug-in, by entry point

    def made(kind: str):
        return lambda n: say(f"  made {kind}: {n} samples")

    def ensure(cache=None, progress=None):  # only the two sets the demo uses (not letters / cortex)
        return ensure_default_data(cache, kinds=DEMO_KINDS, progress=progress)

    say(f"making or finding the default data {DEMO_KINDS} (emulated event camera + silicon cochlea; "
        "made once, about a minute, then cached) ...")
    with heartbeat("making or finding the data"):
        paths = ensure(progress=made)
    say("training or loading the image-audio bundle (trained once on seen classes, then cached) ...")
    with heartbeat("training or loading the bundle"):
        bundle = Bundle.load(default_bundle(log=say))  # its loader asks for the same two sets
    notes_extra = []
    if "feature_transform" not in bundle.extra and \
            bundle.extra.get("trained_by") == "streamlsm.experiments.default_bundle":
        bundle.extra["feature_transform"] = "log1p"  # it trains on log1p(counts) (hash unchanged)
        notes_extra.append("feature transform: log1p(counts), as default_bundle trains (not recorded in it)")
    vision = load(SOURCE_GROUP, "nmnist")(paths["camera-digits"], split="test")
    audio = load(SOURCE_GROUP, "ntidigits")(paths["cochlea-digits"], split="test")  # never trained on
    rng = np.random.default_rng(seed)
    ids = _interleave(list(_by_class(vision).values()), rng)[:limit]
    support = {}
    for lab, idx in _by_class(audio).items():
        digit = SPOKEN.get(lab, lab)  # the cochlea set says "z" for zero (and has "o", no image)
        if digit in bundle.classes:
            take = idx[:10]
            support[digit] = ("audio", [audio.events(i) for i in take], [int(audio.duration_us(i)) for i in take])
    unseen = [c for c in bundle.classes if c not in bundle.seen_classes]
    notes = [f"data: emulated camera digits (test split, {len(ids)} samples) from {paths['camera-digits']}",
             f"model: default bundle {bundle.hash[:19]}, trained on classes {', '.join(bundle.seen_classes)} "
             f"(digits 0-7; spoken 'z' counts as 0)",
             f"prototypes: all ten classes from 10 emulated spoken-digit samples each of the cochlea test split "
             f"(audio -> shared space, never trained on); unseen classes {', '.join(unseen)} were never in "
             "training: zero-shot", *notes_extra]
    cal = bundle.extra.get("calibration")
    notes.append("calibration: " + (f"seen-class offset {dict(map(tuple, cal['offsets']))}, temperature "
                                    f"{cal['temperature']:.3f}, fitted on the training split with digits "
                                    f"{cal.get('info', {}).get('pseudo_unseen', '?')} playing the unseen ones; "
                                    f"labels below the probability certified for a {100 * cal['target']:.0f}% "
                                    "error target are published as 'unknown'"
                                    if cal else "none in this bundle (plain cosine, no abstention)"))
    m = bundle.metrics
    if "test_seen_top1" in m and "test_unseen_top1" in m:
        notes.append(f"offline, the paper's metric (audio -> image retrieval top-1 on the test split): seen "
                     f"{100 * m['test_seen_top1']:.1f}%, unseen {100 * m['test_unseen_top1']:.1f}%")
    return Plan(bundle, Subset(vision, ids), support, unseen, notes)


def nmnist_plan(root: Path, limit: int, seed: int, retrain: bool = False, why: str = "") -> Plan:
    """Real N-MNIST: a vision projection trained here on classes 0-7; 8 and 9 few-shot from support."""
    from ..reservoir import Reservoir, preset

    ds = load(SOURCE_GROUP, "nmnist")(root, split="train")
    rng = np.random.default_rng(seed)
    groups = _by_class(ds)
    train, test, support = [], [], {}
    for lab, idx in sorted(groups.items()):
        idx = [int(i) for i in rng.permutation(idx)]
        half = len(idx) // 2
        support[lab] = idx[:5]
        if lab in SEEN:
            train += idx[:half]
        test.append(idx[half:])
    test_ids = _interleave(test, rng)[:limit]
    cfg = preset("nmnist")
    key = hashlib.sha256(repr((str(Path(root).resolve()), len(ds), seed, to_dict(cfg), 3)).encode()).hexdigest()[:12]
    cache = default_cache_dir() / "demo" / f"nmnist-{key}"
    if (cache / "manifest.json").is_file() and not retrain:
        bundle = Bundle.load(cache)
        say(f"loaded the cached model {cache}")
    else:
        bundle = _train_nmnist(ds, train, cfg, seed, Reservoir)
        bundle.save(cache)
        say(f"cached the model in {cache}")
    sup = {lab: ("vision", [ds.events(i) for i in idx], [int(ds.duration_us(i)) for i in idx])
           for lab, idx in support.items()}
    notes = [f"data: real N-MNIST from {root} ({len(test_ids)} held-out samples streamed)",
             f"model: vision projection (64-d, SupCon) trained in this process on classes {SEEN} "
             f"({len(train)} samples), bundle {bundle.hash[:19]}",
             f"prototypes: 5 N-MNIST support samples per class; classes {UNSEEN} were never trained on "
             "(few-shot from same-modality support samples, not cross-modal zero-shot" + (f": {why}" if why else "")
             + ")"]
    return Plan(bundle, Subset(ds, test_ids), sup, UNSEEN, notes)


def _train_nmnist(ds, train: list[int], cfg, seed: int, Reservoir) -> Bundle:
    try:
        from ..training.train import TrainConfig, train_projections
    except ImportError as exc:  # the edge install has no torch
        raise StreamLSMError(f"training needs the 'train' extra (torch): {exc}") from None
    t0 = time.monotonic()
    say(f"encoding {len(train)} N-MNIST training samples with the reservoir ...")
    res = Reservoir(cfg)
    x = np.log1p(res.encode([ds.events(i) for i in train], [int(ds.duration_us(i)) for i in train],
                            sample_ids=train))
    y = [str(ds.label(i)) for i in train]
    say(f"training the projection head (SupCon, classes {SEEN}) ...")
    b = train_projections(x, x, y, labels_b=y, modalities=("vision", "vision_pair"), dim=64,
                          loss="supcon", temperature=0.1,
                          config=TrainConfig(epochs=40, batch_size=64, lr=3e-3, patience=10, seed=seed),
                          classes=SEEN, reservoirs={"vision": to_dict(cfg), "vision_pair": to_dict(cfg)})
    say(f"trained in {time.monotonic() - t0:.1f} s (validation top-1 {b.metrics.get('val_top1', 0):.3f})")
    return Bundle(heads={"vision": b.heads["vision"]}, classes=SEEN + UNSEEN, seen_classes=SEEN,
                  reservoirs={"vision": to_dict(cfg)}, seed=seed, metrics=b.metrics,
                  extra={"trained_by": "streamlsm demo (N-MNIST fallback)", "feature_transform": "log1p"})


def make_plan(data: str | None, limit: int, seed: int, retrain: bool = False) -> Plan:
    """--data PATH: real N-MNIST there. Otherwise the default data; real N-MNIST if that is missing."""
    if data:
        return nmnist_plan(Path(data), limit, seed, retrain)
    try:
        return default_plan(limit, seed)
    except (ImportError, AttributeError, KeyError, OSError, StreamLSMError) as exc:
        root = data_root() / "nmnist"
        say(f"the default emulated data / bundle are not available ({type(exc).__name__}: {exc}); "
            f"falling back to real N-MNIST at {root}")
        if not (root / "Train").is_dir():
            raise StreamLSMError(f"no default data and no N-MNIST at {root}: pass --data PATH") from None
        return nmnist_plan(root, limit, seed, retrain,
                           why="the default emulated image-audio data/bundle were not available")
