"""Packaging: every package folder is listed in pyproject, public surfaces are explicit."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(cfg["packages"]), cfg["package-dir"]


def test_every_package_folder_is_listed():
    listed, dirs = _listed()
    found = set()
    for name, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    missing = sorted(found - listed)
    assert not missing, f"package folders missing from pyproject [tool.setuptools] packages: {missing}"


def _public_modules():
    for path in sorted((ROOT / "streamlsm").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") and p != "__init__" for p in parts[1:]):
            continue
        yield ".".join(parts)


@pytest.mark.parametrize("module", list(_public_modules()))
def test_public_modules_declare_all(module):
    if "torch" in module or module.startswith(("streamlsm.training.train", "streamlsm.experiments")):
        pytest.importorskip("torch")
    mod = importlib.import_module(module)
    assert mod.__doc__ and mod.__doc__.strip(), f"{module} has no docstring"
    assert hasattr(mod, "__all__"), f"{module} has no __all__"
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names {name!r}, which does not exist"


def test_the_edge_daemon_never_imports_ray():
    """The daemon, the whole CLI (every command's parser) and the cluster package's own import
    leave ray unloaded: only running the scale-out (`streamlsm cluster ...`) loads it."""
    import subprocess
    import sys

    code = ("import sys; import streamlsm.daemon.daemon, streamlsm.cli, streamlsm.cluster, streamlsm.cluster.gateway; "
            "streamlsm.cli.build_parser(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_cluster_extra_pins_ray_and_all_installs_it():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["cluster"] == ["ray==2.60.0"]
    assert "streamlsm[cluster]" in extras["all"]
    assert not any("torch" in d for d in extras["cluster"])


def test_cluster_commands_without_ray_say_how_to_install_it(tmp_path):
    """With ray absent, every `streamlsm cluster` action fails in one line naming the extra."""
    import subprocess
    import sys

    for action in (["status"], ["up", "--dry-run"], ["serve", "--config", str(tmp_path / "x.toml")]):
        code = ("import sys; sys.modules['ray'] = None; from streamlsm.cli import main; "
                f"sys.exit(main({['cluster', *action]!r}))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, (action, r.stdout, r.stderr)
        assert r.stderr.strip().splitlines() == ["streamlsm: error: ray is not installed: install "
                                                 "streamlsm[cluster] (pip install 'streamlsm[cluster]')"], r.stderr
