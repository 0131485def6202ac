"""The architecture as a test: imports flow one way (DESIGN.md), heavy libraries stay in their place."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "streamlsm"

# Lower numbers are closer to the leaves; a module may import only strictly lower layers
# (or modules of its own sub-package). Longest matching prefix decides a module's layer.
LAYERS = {
    "streamlsm": 0,  # the package __init__: re-exports leaves only
    "streamlsm.errors": -1,
    "streamlsm.events": 0,
    "streamlsm.config": 0,
    "streamlsm.wire": 1,
    "streamlsm.clock": 1,
    "streamlsm.replay": 1,
    "streamlsm.plugins": 1,
    "streamlsm.reservoir": 1,
    "streamlsm.readout": 2,  # may read reservoir configs
    "streamlsm.emulate": 1,
    "streamlsm.pipeline_parts": 2,  # pipeline config, counters, feature transform, offline labels
    "streamlsm.pipeline": 3,
    "streamlsm.experiments": 3,
    "streamlsm.transport": 4,
    "streamlsm.peers": 1,  # a socket's peers from its monitor events (PeerWatch, HandshakeWatch): zmq and errors only
    "streamlsm.publisher": 5,  # a PUB sender (XPUB) that knows its subscriptions
    "streamlsm.live": 5,  # live sensors: the synchronous LiveSender and the LiveSource plug-ins
    "streamlsm.security": 4,
    "streamlsm.runtime_parts": 4,  # the daemon's config records, packet buffer, sinks, support files
    "streamlsm.runtime_control": 4,  # the daemon's control commands (a mixin) and support files
    "streamlsm.runtime": 5,
    "streamlsm.cluster": 5,
    "streamlsm.testing_procs": 4,  # synthetic samples, process / socket test helpers (events, wire, errors)
    "streamlsm.testing_load": 4,  # the load generator (pre-encoded real-time streams from worker processes): tests and bench only
    "streamlsm.testing": 5,
    "streamlsm.testing_hostile": 6,  # hostile peers against a running daemon (tests and bench only)
    "streamlsm.cli": 6,
    "streamlsm.__main__": 7,  # `python -m streamlsm`: runs the CLI
}
# third-party imports allowed only under these prefixes
ONLY_IN = {
    "numba": ("streamlsm.reservoir._kernel",),
    "msgpack": ("streamlsm.wire",),
    "torch": ("streamlsm.readout.train", "streamlsm.experiments", "streamlsm.cli"),
    "zmq": ("streamlsm.transport", "streamlsm.security", "streamlsm.peers", "streamlsm.publisher",
            "streamlsm.live", "streamlsm.runtime", "streamlsm.cluster", "streamlsm.cli",
            "streamlsm.testing"),
    "asyncio": ("streamlsm.clock", "streamlsm.transport", "streamlsm.publisher", "streamlsm.runtime", "streamlsm.cluster",
                "streamlsm.cli", "streamlsm.testing"),
    "aiostream": ("streamlsm.transport", "streamlsm.runtime", "streamlsm.cluster", "streamlsm.cli",
                  "streamlsm.testing"),
}
KERNEL_ALLOWED = {"numba", "numpy", "math", "__future__"}


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _layer(module: str) -> tuple[str, int]:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    assert best is not None, f"{module} has no layer in tests/test_architecture.py LAYERS: add it"
    return best, LAYERS[best]


def _imports(module: str, path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    for alias in node.names:
                        yield f"{target}.{alias.name}"
                    continue
                yield target
            else:
                yield node.module


def test_imports_flow_one_way():
    problems = []
    for module, path in _modules():
        owner, layer = _layer(module)
        for imp in _imports(module, path):
            top = imp.split(".")[0]
            if top in ("streamlsm_sources", "streamlsm_sinks", "sources", "sinks"):
                problems.append(f"{module} imports {imp}: streamlsm/ never imports plug-ins")
            if top == "streamlsm":
                if imp == "streamlsm" or module == "streamlsm":
                    target_owner, target_layer = _layer(imp)
                    if module == "streamlsm" and target_layer > 0:
                        problems.append(f"streamlsm/__init__ imports {imp} (layer {target_layer})")
                    continue
                target_owner, target_layer = _layer(imp)
                if target_owner == owner:
                    continue
                if target_layer >= layer:
                    problems.append(f"{module} (layer {layer}) imports {imp} (layer {target_layer})")
            for lib, allowed in ONLY_IN.items():
                if top == lib and not module.startswith(allowed):
                    problems.append(f"{module} imports {lib}, allowed only in {allowed}")
            if module == "streamlsm.reservoir._kernel" and top not in KERNEL_ALLOWED:
                problems.append(f"the kernel imports {imp}; it may import only {KERNEL_ALLOWED}")
    assert not problems, "\n".join(problems)


def test_no_unsafe_deserialisation_in_source_tree():
    banned = ("pickle", "cloudpickle", "dill", "marshal", "shelve")
    problems = []
    for folder in ("streamlsm", "sources", "sinks", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import) and any(a.name.split(".")[0] in banned for a in node.names):
                    problems.append(f"{path}: imports {[a.name for a in node.names]}")
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in banned:
                    problems.append(f"{path}: imports from {node.module}")
                if isinstance(node, ast.Call):
                    fn = node.func
                    name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                    if name in ("eval", "exec"):
                        problems.append(f"{path}:{node.lineno}: calls {name}")
                    if name == "load" and isinstance(fn, ast.Attribute) and getattr(fn.value, "id", "") == "torch":
                        kw = {k.arg: k.value for k in node.keywords}
                        ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                        if not ok:
                            problems.append(f"{path}:{node.lineno}: torch.load without weights_only=True")
                    if name == "load" and isinstance(fn, ast.Attribute) and getattr(fn.value, "id", "") == "np":
                        kw = {k.arg: k.value for k in node.keywords}
                        bad = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is True
                        if bad:
                            problems.append(f"{path}:{node.lineno}: np.load(allow_pickle=True)")
    assert not problems, "\n".join(problems)
