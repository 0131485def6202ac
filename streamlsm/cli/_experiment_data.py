"""Data loading for `streamlsm experiment` (the CLI layer may import streamlsm_sources)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["nmnist_samples", "cochlea_samples", "av_samples", "cortex_sessions", "source", "emulated"]


def source(name: str):
    """A dataset class by plug-in name (streamlsm never imports the plug-in packages by name)."""
    from ..plugins import SOURCE_GROUP, load

    return load(SOURCE_GROUP, name)


def emulated():
    """The emulated-data plug-in module, found through the emulator entry points."""
    import sys

    from ..plugins import EMULATOR_GROUP, load

    return sys.modules[load(EMULATOR_GROUP, "camera-digits").__module__]


def nmnist_samples(root: Path, split: str = "train"):
    from ..experiments.features import Samples

    return Samples.from_dataset(source("nmnist")(root / "nmnist", split=split), name=f"nmnist-{split}")


def _cache(cache) -> Path:
    from ..config import default_cache_dir

    return Path(cache) if cache is not None else default_cache_dir()


def cochlea_samples(root: Path, cache=None, log=print):
    """FSDD recordings through the cochlea emulator (made once, cached), train + test splits, speakers
    as groups; synthesised eSpeak digits (cochlea-digits) where the recordings are absent."""
    from ..experiments.features import Samples

    em = emulated()
    cochlea_from_wavs, ensure_default_data, read_manifest = em.cochlea_from_wavs, em.ensure_default_data, em.read_manifest
    NTidigitsDataset = source("ntidigits")  # noqa: N806

    wavs = root / "fsdd" / "recordings"
    if wavs.is_dir():
        folder = _cache(cache) / "data" / "fsdd-cochlea-s0"
        man = read_manifest(folder)
        if not man or man.get("samples", {}).get("train", 0) + man.get("samples", {}).get("test", 0) \
                != len(list(wavs.glob("*.wav"))):
            log(f"making cochlea events from {wavs} into {folder} (once) ...")
            cochlea_from_wavs(wavs, folder)
        name = "FSDD recordings -> emulated cochlea"
    else:
        log(f"{wavs} absent: using synthesised spoken digits (cochlea-digits)")
        folder = ensure_default_data(cache, kinds=("cochlea-digits",))["cochlea-digits"]
        name = "synthesised speech -> emulated cochlea"
    parts = []
    for split in ("train", "test"):
        try:
            ds = NTidigitsDataset(folder, split=split)
        except Exception:  # noqa: BLE001 - a split may be absent
            continue
        parts.append(Samples.from_dataset(ds, groups=ds.speaker, name=name))
    ev = [e for p in parts for e in p.events]
    return Samples(ev, np.concatenate([p.durations for p in parts]), np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.groups for p in parts]), name=name)


def av_samples(root: Path, cache=None, quick: bool = False, log=print):
    images = nmnist_samples(root)
    audio = cochlea_samples(root, cache, log)
    if quick:
        rng = np.random.default_rng(0)
        images = images.subset(np.sort(rng.permutation(len(images))[:400]))
        audio = audio.subset(np.sort(rng.permutation(len(audio))[:600]))
    log(f"images: {len(images)}, audio: {len(audio)} ({audio.name})")
    return images, audio


def cortex_sessions(root: Path, quick: bool = False) -> dict:
    """{session: (train+val Samples, test Samples)} of the auditory-cortex recordings (authors' roles)."""
    from ..experiments.features import Samples

    cls = source("auditory-cortex")
    folder = root / "neural" / "auditory_cortex"
    out = {}
    for csv in sorted(folder.glob("*.csv")):
        parts = {r: Samples.from_dataset(cls(root, role=r, session=csv.stem), name=csv.stem)
                 for r in ("train", "val", "test")}
        tr = parts["train"]
        va = parts["val"]
        train = Samples(tr.events + va.events, np.concatenate([tr.durations, va.durations]),
                        np.concatenate([tr.labels, va.labels]), name=csv.stem)
        out[csv.stem] = (train, parts["test"])
        if quick:
            break
    return out
