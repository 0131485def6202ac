"""The paper's experiments: feature caching, training, baselines, zero-shot evaluation."""

from .bundle_default import default_bundle

__all__ = ["default_bundle"]
