"""The paper's experiments: feature caching, training, baselines, zero-shot evaluation."""

__all__: list[str] = []
