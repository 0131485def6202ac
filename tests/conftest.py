"""Shared fixtures: the real-data root (one setting: $STREAMLSM_DATA, default ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlsm.config import DATA_ENV, data_root


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data root; skips the test, saying why, where it is absent."""
    root = data_root()
    if not (root / "README.md").is_file():
        pytest.skip(f"real data not found at {root.resolve()} (set {DATA_ENV} to the shared/data folder)")
    return root


def require(path: Path) -> Path:
    """Skip (with the reason) unless ``path`` exists under the data root."""
    if not path.exists():
        pytest.skip(f"real data {path} is absent")
    return path


@pytest.fixture(scope="session")
def real_file(real_data: Path):
    """``real_file("nmnist", "Train")``: that file or folder under the data root, else a skip saying it is absent."""
    return lambda *parts: require(real_data.joinpath(*parts))
