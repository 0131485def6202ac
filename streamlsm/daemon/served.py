"""What a server serves: the bundle, the prototypes (matcher), the pipeline and its processing loop.

One ``ServedModel`` is built from the daemon's config sections (model, pipeline, limits), by the edge
daemon and by each scale-out shard alike. It owns the prototype checkpoint (restored at start,
written atomically on every change), vets and swaps bundles, and embeds support samples. It is
synchronous and not thread-safe: its owner serialises calls (the daemon holds one asyncio lock
around every pipeline call and every change).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from ..loop import ProcessLoop
from ..model.bundle import Bundle, embed, feature_transform
from ..model.calibration import bundle_calibration
from ..model.prototypes import PrototypeMatcher
from ..net.security import load_signing_key
from ..pipeline import Pipeline, PipelineConfig
from .config import LimitsConfig, ModelConfig

__all__ = ["ServedModel", "vet_bundle", "sweep_checkpoint_orphans"]


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
    """ModelError naming why a server could not run this bundle, checked before it is used:
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


class ServedModel:
    """The bundle, the prototypes and the pipeline a server runs, from its config sections.

    ``bundle`` overrides ``model.bundle`` (tests); ``reservoir_factory`` replaces the bundle's
    reservoirs (tests, fakes). Raises ModelError / CheckpointError when the bundle or the
    checkpoint cannot be served.
    """

    def __init__(self, model: ModelConfig, pipeline: PipelineConfig | None = None,
                 limits: LimitsConfig | None = None, *, bundle: Bundle | None = None,
                 reservoir_factory: Callable[[str], Any] | None = None) -> None:
        self.model_config = model
        self.pipeline_config = pipeline or PipelineConfig()
        self.limits = limits or LimitsConfig()
        self.signing_key = load_signing_key(model.signing_key) if model.signing_key else None
        self.bundle = bundle if bundle is not None else Bundle.load(model.bundle, self.signing_key)
        self.checkpoint_path = Path(model.prototypes)
        self.orphans_removed = sweep_checkpoint_orphans(self.checkpoint_path)
        self.matcher = self._restore_matcher()
        vet_bundle(self.bundle, self.matcher.dim, self.limits.max_neurons, self.limits.model_mb)
        self.reservoir_factory = reservoir_factory
        self.pipeline = Pipeline(self.bundle, self.matcher, self.pipeline_config, reservoir_factory)
        self.loop = ProcessLoop(self.pipeline, self.limits.max_call_us)
        self.checkpoints = 0
        self.reloads = 0
        self._saved_version = self.matcher.version

    def _restore_matcher(self) -> PrototypeMatcher:
        m, path = self.model_config, self.checkpoint_path
        if path.is_file():
            matcher = PrototypeMatcher.load(path)
        else:
            dims = sorted({h.out_features for h in self.bundle.heads.values() if h.normalise})
            if not dims:
                raise ModelError("the bundle has no projection head to match prototypes against")
            matcher = PrototypeMatcher(dims[0], m.threshold, m.update, m.ema)
        matcher.calibrate(bundle_calibration(self.bundle), self.bundle.seen_classes, m.error_target)
        return matcher

    # ------------------------------------------------------------ prototypes
    @property
    def unsaved(self) -> bool:
        """The prototypes changed since the last checkpoint (online updates)."""
        return self.matcher.version != self._saved_version

    def checkpoint(self, force: bool = True) -> Path | None:
        """Write the prototype checkpoint (``force=False``: only when there are unsaved changes)."""
        if not force and not self.unsaved:
            return None
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        self.matcher.save(self.checkpoint_path)
        self._saved_version = self.matcher.version
        self.checkpoints += 1
        return self.checkpoint_path

    def change(self, apply: Callable[[PrototypeMatcher], object]) -> None:
        """Apply a class change and checkpoint it; if either fails, the classes are as before.

        A full disk or an unwritable path leaves the previous checkpoint intact (atomic writes) and
        the classes in memory equal to what a restart would restore.
        """
        before = self.matcher.classes_state()
        try:
            apply(self.matcher)
            self.checkpoint()
        except BaseException:
            self.matcher.set_classes_state(before)
            raise

    def embed_support(self, kind: str, data: Any, modality: str):
        """Embeddings of support samples: given as ``embeddings``, reservoir ``features``, or
        ``events`` (samples, durations) run through the modality's reservoir."""
        if kind == "embeddings":
            return data
        if kind == "features":
            return embed(self.bundle, modality, data)
        samples, durations = data
        return self.pipeline.embed_support(modality, samples, durations)

    # ------------------------------------------------------------ bundles
    def load_bundle(self, path: Path) -> Bundle:
        """Read a bundle (its signature checked when ``model.signing_key`` is set) and try it."""
        bundle = Bundle.load(path, self.signing_key)
        self.try_bundle(bundle)
        return bundle

    def try_bundle(self, bundle: Bundle) -> None:
        """Accept a bundle only once it has run: vet it, then label one tiny sample per modality in
        a trial pipeline of the same config (the running one is untouched until ``swap``)."""
        vet_bundle(bundle, self.matcher.dim, self.limits.max_neurons, self.limits.model_mb)
        trial = Pipeline(bundle, copy.deepcopy(self.matcher), self.pipeline_config, self.reservoir_factory)
        try:
            trial.warm_up()
        except MemoryError:
            raise ModelError("the bundle's reservoir does not fit in memory") from None
        except (ValueError, TypeError, IndexError, ArithmeticError) as exc:
            raise ModelError(f"the bundle fails on a test sample: {type(exc).__name__}: {exc}") from None

    def swap(self, bundle: Bundle) -> None:
        """Serve ``bundle`` from the next pipeline call on (see ``Pipeline.swap_bundle``)."""
        self.pipeline.swap_bundle(bundle, self.reservoir_factory)
        self.bundle = bundle
        self.matcher.calibrate(bundle_calibration(bundle), bundle.seen_classes, self.model_config.error_target)
        self.reloads += 1
