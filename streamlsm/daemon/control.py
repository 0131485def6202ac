"""The daemon's control side: support files for ``register``, and the commands of ``streamlsm ctl``."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ControlError, ModelError, WireError
from ..model.bundle import Bundle, embed, feature_transform
from ..model.calibration import bundle_calibration
from ..net import wire
from ..pipeline import Pipeline
from ..plugins import SOURCE_GROUP, load

__all__ = ["load_support", "ControlCommands", "vet_bundle", "sweep_checkpoint_orphans"]


def sweep_checkpoint_orphans(path: Path) -> int:
    """Remove what a kill -9 during ``PrototypeMatcher.save`` can leave beside the checkpoint
    ``path``: ``<stem>.<token>.npz(.tmp)`` not named by the manifest, ``<name>.<token>.tmp``.
    Returns how many files were removed (run at start, before anything writes a checkpoint)."""
    import json
    import re

    folder = path.parent
    if not folder.is_dir():
        return 0
    keep = None
    try:
        keep = json.loads(path.read_text(encoding="utf-8")).get("arrays")
    except (OSError, ValueError, AttributeError):
        pass
    arrays = re.compile(rf"{re.escape(path.stem)}\.[0-9a-f]{{12}}\.npz(\.tmp)?\Z")
    manifest_tmp = re.compile(rf"{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp\Z")
    removed = 0
    for p in folder.iterdir():
        if p.name != keep and (arrays.match(p.name) or manifest_tmp.match(p.name)) and p.is_file():
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def vet_bundle(bundle: Bundle, matcher_dim: int, max_neurons: int, model_mb: float) -> None:
    """ModelError naming why the daemon could not run this bundle, checked before it is used:
    each reservoir config valid and within ``max_neurons``, each head's input the size of its
    reservoir's features, a known feature transform, a projection head of the matcher's dimension,
    and the weights it needs (reservoirs and heads) within ``model_mb``."""
    from ..reservoir import ReservoirConfig  # late: importing it compiles nothing, but is not free

    need = 0
    for m in bundle.modalities:
        head = bundle.head(m)
        need += sum(w.size * 4 + b.size * 4 for w, b in zip(head.weights, head.biases, strict=True))
        feature_transform(bundle, m)  # ModelError on an unknown one
        if bundle.reservoirs.get(m) is None:
            continue
        try:
            cfg = bundle.reservoir_config(m, ReservoirConfig)
        except ConfigError as exc:
            raise ModelError(f"bundle reservoir {m!r}: {exc}") from None
        if cfg.n_neurons > max_neurons:
            raise ModelError(f"bundle reservoir {m!r}: n_neurons {cfg.n_neurons} exceeds limits.max_neurons "
                             f"= {max_neurons}")
        want = cfg.n_neurons * cfg.feature_windows
        if head.in_features != want:
            raise ModelError(f"bundle head {m!r} takes {head.in_features} features, its reservoir makes "
                             f"{want} (n_neurons x feature_windows)")
        copies = 2 if cfg.read_noise > 0 else 1  # W and W**2 when noisy
        need += copies * 4 * cfg.n_neurons * (cfg.n_neurons + max(cfg.n_inputs, 1))
    if need > model_mb * (1 << 20):
        raise ModelError(f"the bundle needs about {need / (1 << 20):.0f} MiB of weights, more than "
                         f"limits.model_mb = {model_mb:g}")
    dims = {h.out_features for h in bundle.heads.values() if h.normalise}
    if matcher_dim not in dims:
        raise ModelError(f"no projection head of the bundle gives the prototypes' dimension {matcher_dim} "
                         f"(heads give {sorted(dims)})")


_LAYOUT_MODALITY = {"dvs": "vision", "cochlea": "audio", "spikes": "neural"}


def load_support(path: Path, modality: str, req: dict) -> tuple[str, Any, str]:
    """Support samples of one class from a file: (kind, data, modality).

    An ``.npz`` holds ``embeddings`` (n, D), or ``features`` (n, F), or concatenated ``events`` (one
    streamlsm layout) with per-sample ``lengths`` and optional ``durations`` (us). With
    ``req["dataset"]`` the path is a data set root read by that source plug-in; the samples labelled
    ``req.get("from_label", req["label"])`` are used, at most ``req.get("limit", 20)``.
    """
    if req.get("dataset"):
        cls = load(SOURCE_GROUP, str(req["dataset"]))
        opts = {k: req[k] for k in ("split",) if k in req}
        ds = cls(path, **opts)
        want, limit = str(req.get("from_label", req.get("label"))), int(req.get("limit", 20))
        idx = [i for i in range(len(ds)) if ds.label(i) == want][:limit]
        if not idx:
            raise ControlError(f"no sample labelled {want!r} in {path}")
        return ("events", ([ds.events(i) for i in idx], [int(ds.duration_us(i)) for i in idx]),
                modality or ds.modality)
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read support file {path}: {exc}") from None
    if "embeddings" in arrays:
        return "embeddings", arrays["embeddings"], modality
    if not modality and "events" in arrays:
        from ..events import layout_of

        modality = _LAYOUT_MODALITY[layout_of(arrays["events"])]
    if not modality:
        raise ControlError("say which modality the support samples are ('modality')")
    if "features" in arrays:
        return "features", arrays["features"].astype(np.float32), modality
    if "events" in arrays and "lengths" in arrays:
        ev, lengths = arrays["events"], arrays["lengths"].astype(np.int64)
        if lengths.ndim != 1 or (lengths < 0).any() or lengths.sum() != len(ev):
            raise ControlError(f"{path}: lengths do not add up to the {len(ev)} events")
        edges = np.concatenate([[0], np.cumsum(lengths)])
        samples = [ev[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
        durations = arrays.get("durations")
        return "events", (samples, None if durations is None else [int(d) for d in durations]), modality
    raise ControlError(f"{path} holds none of: embeddings, features, events + lengths")


class ControlCommands:
    """The control commands of ``Daemon`` (a mixin: it uses the daemon's config, matcher, bundle,
    pipeline, counters and lock): status, register, remove, snapshot, reload, and checkpoints."""

    def _checkpoint(self, force: bool = True) -> Path | None:
        if not force and self.matcher.version == self._saved_version:
            return None
        path = Path(self.config.model.prototypes)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.matcher.save(path)
        self._saved_version = self.matcher.version
        self.counters["checkpoints"] += 1
        return path

    def _transact(self, change) -> None:
        """Apply a class change and checkpoint it; if either fails, the matcher is as before.

        A full disk or an unwritable path leaves the previous checkpoint intact (atomic writes) and
        the registered classes in memory equal to what a restart would restore.
        """
        backup = copy.deepcopy(self.matcher.__dict__)
        try:
            change()
            self._checkpoint()
        except BaseException:
            self.matcher.__dict__.clear()
            self.matcher.__dict__.update(backup)
            raise

    def confine(self, raw: object, what: str = "path") -> Path:
        """A path inside one of control.allowed_dirs (resolved, symlinks followed) or ControlError."""
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            raise ControlError(f"{what} must be a non-empty path string")
        p = Path(raw).expanduser().resolve()
        for d in self.config.control.allowed_dirs:
            if p.is_relative_to(Path(d).expanduser().resolve()):
                return p
        dirs = [str(Path(d).expanduser().resolve()) for d in self.config.control.allowed_dirs]
        raise ControlError(f"{what} {raw!r} lies outside control.allowed_dirs {dirs}: put it in one "
                           "of them, or add its folder to [control] allowed_dirs in the daemon's "
                           "config")

    async def _control(self, sock) -> None:
        while True:
            frames = await sock.recv_multipart()  # all parts: REP cannot reply with parts unread
            self.counters["control"] += 1
            try:
                if len(frames) != 1:
                    raise ControlError(f"a control request is one message part, got {len(frames)}")
                req = wire.unpack_control(frames[0])
                if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                    raise ControlError("a control request is a map with a 'cmd' string")
                reply = await self.handle(req)
            except Exception as exc:  # noqa: BLE001 - a bad request must never kill the control loop
                self.counters["control_errors"] += 1
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            try:
                out = wire.pack_control(reply)
            except WireError as exc:  # a reply value msgpack cannot carry: say so, keep serving
                self.counters["control_errors"] += 1
                out = wire.pack_control({"ok": False, "error": f"WireError: {exc}"})
            await sock.send(out)

    async def handle(self, req: dict) -> dict:
        """Run one control command: status, register, remove, snapshot, reload."""
        cmd = req["cmd"]
        if cmd == "status":
            return self.status()
        if cmd == "register":
            label = req.get("label")
            path = self.confine(req.get("path"))
            modality = req.get("modality") or ""
            if req.get("dataset"):  # a symlink inside the data set must not lead outside allowed_dirs
                await asyncio.to_thread(self._confine_tree, path)
            kind, data, mod = await asyncio.to_thread(load_support, path, modality, req)
            async with self._lock:  # Reservoir.encode may not run beside a feed (shared reservoir)
                emb = await asyncio.to_thread(self._embed, kind, data, mod)
            rule = "replace" if req.get("replace") else str(req.get("rule") or "mean")
            if rule not in ("mean", "ema", "replace"):
                raise ControlError(f"register rule must be 'mean', 'ema' or 'replace', got {rule!r}")
            async with self._lock:
                self._transact(lambda: self.matcher.enrol(label, emb, rule, source=str(path)))
            return {"ok": True, "label": label, "samples": int(len(emb)), "modality": mod, "rule": rule,
                    "enrolled": self.matcher.count(label), "prototype_version": self.matcher.version,
                    "classes": self.matcher.labels, "calibration": self.matcher.calibration}
        if cmd == "remove":
            async with self._lock:
                self._transact(lambda: self.matcher.remove(req.get("label")))
            return {"ok": True, "classes": self.matcher.labels, "prototype_version": self.matcher.version}
        if cmd == "snapshot":
            async with self._lock:
                path = self._checkpoint()
            return {"ok": True, "path": str(path), "prototype_version": self.matcher.version}
        if cmd == "reload":
            path = self.confine(req["path"], "bundle") if req.get("path") else self.config.model.bundle
            bundle = await asyncio.to_thread(Bundle.load, path, self._signing_key)
            await asyncio.to_thread(self._try_bundle, bundle)
            async with self._lock:  # between two batches: input keeps queueing meanwhile
                self.pipeline.swap_bundle(bundle, self._factory)
                self.bundle = bundle
                self.matcher.calibrate(bundle_calibration(bundle), bundle.seen_classes,
                                       self.config.model.error_target)
                self.counters["reloads"] += 1
            return {"ok": True, "bundle_hash": bundle.hash, "path": str(path)}
        raise ControlError(f"unknown command {cmd!r}; known: status, register, remove, snapshot, reload")

    def _confine_tree(self, root: Path) -> None:
        """ControlError if any symlink under ``root`` resolves outside control.allowed_dirs."""
        import os

        for folder, dirs, files in os.walk(root, followlinks=False):
            for name in dirs + files:
                p = Path(folder) / name
                if p.is_symlink():
                    self.confine(str(p), "a link in the data set")

    def _try_bundle(self, bundle: Bundle) -> None:
        """Accept a bundle only once it has run: vet it, then label one tiny sample per modality in
        a trial pipeline of the daemon's own config (the running one is untouched until the swap)."""
        lim = self.config.limits
        vet_bundle(bundle, self.matcher.dim, lim.max_neurons, lim.model_mb)
        trial = Pipeline(bundle, copy.deepcopy(self.matcher), self.config.pipeline, self._factory)
        try:
            trial.warm_up()
        except MemoryError:
            raise ModelError("the bundle's reservoir does not fit in memory") from None
        except (ValueError, TypeError, IndexError, ArithmeticError) as exc:
            raise ModelError(f"the bundle fails on a test sample: {type(exc).__name__}: {exc}") from None

    def _embed(self, kind: str, data: Any, modality: str):
        if kind == "embeddings":
            return data
        if kind == "features":
            return embed(self.bundle, modality, data)
        samples, durations = data
        return self.pipeline.embed_support(modality, samples, durations)
