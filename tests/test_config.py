"""Config machinery: frozen sections, type checks and key paths in errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from streamlsm.config import from_dict, load_toml, to_dict
from streamlsm.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    bin_us: int = 6000
    policy: Literal["block", "drop_oldest"] = "block"

    def validate(self) -> None:
        if self.bin_us <= 0:
            raise ConfigError("bin_us", "must be > 0")


@dataclass(frozen=True)
class Outer:
    name: str
    seed: int = 0
    scale: float = 1.0
    inner: Inner = field(default_factory=Inner)
    hosts: tuple[str, ...] = ()
    path: Path | None = None


def test_builds_frozen_sections():
    cfg = from_dict(Outer, {"name": "a", "scale": 2, "inner": {"bin_us": 10}, "hosts": ["h1"]})
    assert cfg.scale == 2.0 and cfg.inner.bin_us == 10 and cfg.hosts == ("h1",)
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]
    assert to_dict(cfg)["inner"] == {"bin_us": 10, "policy": "block"}


@pytest.mark.parametrize(
    "data, key",
    [
        ({}, "name"),
        ({"name": "a", "sed": 1}, "sed"),
        ({"name": "a", "seed": "1"}, "seed"),
        ({"name": "a", "seed": True}, "seed"),
        ({"name": "a", "inner": {"bin_us": 0}}, "inner.bin_us"),
        ({"name": "a", "inner": {"policy": "drop"}}, "inner.policy"),
        ({"name": "a", "inner": {"oops": 1}}, "inner.oops"),
        ({"name": "a", "hosts": "h1"}, "hosts"),
    ],
)
def test_errors_name_the_key_path(data, key):
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data)
    assert info.value.key == key


def test_load_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "x"\n[inner]\nbin_us = 5\n')
    assert load_toml(p, Outer).inner.bin_us == 5
    p.write_text("name = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(p, Outer)
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml", Outer)
