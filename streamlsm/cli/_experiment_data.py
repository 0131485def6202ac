"""Data loading for `streamlsm experiment` (the CLI layer may import streamlsm_sources)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["nmnist_samples", "recordings_key", "cochlea_parts", "cochlea_samples", "av_samples", "cortex_sessions", "letters", "source", "emulated"]


def source(name: str):
    """A dataset class by plug-in name (streamlsm never imports the plug-in packages by name)."""
    from ..plugins import SOURCE_GROUP, load

    return load(SOURCE_GROUP, name)


def emulated():
    """The emulated-data plug-in module (entry point ``streamlsm.data: emulated``)."""
    from ..plugins import DATA_GROUP, load

    return load(DATA_GROUP, "emulated")


def nmnist_samples(root: Path, split: str = "train"):
    from ..experiments.features import Samples

    return Samples.from_dataset(source("nmnist")(root / "nmnist", split=split), name=f"nmnist-{split}")


def _cache(cache) -> Path:
    from ..config import default_cache_dir

    return Path(cache) if cache is not None else default_cache_dir()


def recordings_key(wav_dir: Path) -> str:
    """Cache key of a folder of recordings: sha256 over every WAV's name, size and bytes (another
    data root with as many recordings, or an edited recording, gets its own events)."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(wav_dir.glob("*.wav")):
        data = p.read_bytes()
        h.update(f"{p.name}\x00{len(data)}\x00".encode())
        h.update(data)
    return h.hexdigest()[:16]


def cochlea_parts(root: Path, cache=None, log=print) -> dict:
    """{"train", "test"}: Samples of spoken digits through the cochlea, speakers as groups. Real
    n-tidigits.hdf5 under root/ntidigits when present; else the FSDD recordings through the cochlea
    emulator (made once, cached); else synthesised eSpeak digits (cochlea-digits)."""
    from ..errors import DataError
    from ..experiments.features import Samples

    em = emulated()
    NTidigitsDataset = source("ntidigits")  # noqa: N806
    wavs = root / "fsdd" / "recordings"
    real = root / "ntidigits" / "n-tidigits.hdf5"
    if real.is_file():
        folder, name = real, "N-TIDIGITS (real)"
    elif wavs.is_dir():
        folder = _cache(cache) / "data" / f"fsdd-cochlea-s0-{recordings_key(wavs)}"
        man = em.read_manifest(folder)
        done = sum((man or {}).get("samples", {}).values()) if man else 0
        if done != len(list(wavs.glob("*.wav"))):
            log(f"making cochlea events from {wavs} into {folder} (once) ...")
            em.cochlea_from_wavs(wavs, folder)
        name = "FSDD recordings -> emulated cochlea"
    else:
        log(f"{wavs} absent: using synthesised spoken digits (cochlea-digits)")
        folder = em.ensure_default_data(cache, kinds=("cochlea-digits",))["cochlea-digits"]
        name = "synthesised speech -> emulated cochlea"
    parts = {}
    for split in ("train", "test"):
        try:
            ds = NTidigitsDataset(folder, split=split)
        except DataError as exc:  # a split may be absent (or the file unreadable): say which and why
            log(f"cochlea {split} split not used: {exc}")
            continue
        parts[split] = Samples.from_dataset(ds, groups=ds.speaker, name=name)
    return parts


def cochlea_samples(root: Path, cache=None, log=print):
    """All cochlea utterances (train + test) in one Samples, speakers as groups."""
    from ..experiments.features import Samples

    parts = list(cochlea_parts(root, cache, log).values())
    ev = [e for p in parts for e in p.events]
    return Samples(ev, np.concatenate([p.durations for p in parts]), np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.groups for p in parts]), name=parts[0].name)


def av_samples(root: Path, cache=None, quick: bool = False, log=print):
    images = nmnist_samples(root)
    audio = cochlea_samples(root, cache, log)
    if quick:
        rng = np.random.default_rng(0)
        images = images.subset(np.sort(rng.permutation(len(images))[:400]))
        audio = audio.subset(np.sort(rng.permutation(len(audio))[:600]))
    log(f"images: {len(images)}, audio: {len(audio)} ({audio.name})")
    return images, audio


def cortex_sessions(root: Path, quick: bool = False, only: list[str] | None = None) -> dict:
    """{session: (train+val Samples, test Samples)} of the auditory-cortex recordings (authors' roles);
    ``only``: these sessions (CSV stems)."""
    from ..errors import DataError
    from ..experiments.features import Samples

    cls = source("auditory-cortex")
    folder = root / "neural" / "auditory_cortex"
    out = {}
    csvs = sorted(folder.glob("*.csv"))
    if only:
        missing = sorted(set(only) - {c.stem for c in csvs})
        if missing:
            raise DataError(folder, f"no session(s) {missing}; present: {[c.stem for c in csvs]}")
        csvs = [c for c in csvs if c.stem in only]
    for csv in csvs:
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


def letters(cache=None, log=print):
    """Emulated cortex-letters (spike tables) and camera-letters (DVS), {"train", "test"} each."""
    from ..experiments.features import Samples

    em = emulated()
    log("making or finding the emulated letter sets (camera-letters, cortex-letters) ...")
    paths = em.ensure_default_data(cache, kinds=("camera-letters", "cortex-letters"))
    table = source("spike-table")
    neural = {s: Samples.from_dataset(table(paths["cortex-letters"] / f"{s}.npz"), name="cortex-letters (emulated)")
              for s in ("train", "test")}
    images = {s: Samples.from_dataset(em.CameraTreeDataset(paths["camera-letters"], split=s),
                                      name="camera-letters (emulated)") for s in ("train", "test")}
    return neural, images
