"""The architecture as a test: imports flow one way, no circles, test helpers stay out of production code."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "streamlsm"

# Lower numbers are closer to the leaves; a module may import only strictly lower layers (or modules
# of its own entry: the longest matching prefix decides a module's layer). docs/design.md draws the
# tree: leaves <- wire, stream, reservoir <- model <- pipeline <- loop <- transport <- daemon <- cli.
LAYERS = {
    "streamlsm": 0,  # the package __init__: re-exports leaves only
    "streamlsm.errors": -1,
    "streamlsm.events": 0,
    "streamlsm.config": 0,
    "streamlsm.plugins": 1,
    "streamlsm.net.wire": 1,       # THE wire format: msgpack, never zmq
    "streamlsm.net.peers": 1,      # a socket's peers from its monitor events: zmq and errors only
    "streamlsm.stream": 1,         # replay schedule, pacing, synthetic streams
    "streamlsm.reservoir": 1,
    "streamlsm.emulate": 1,
    "streamlsm.model": 2,          # bundle, projection, prototypes, calibration (may read reservoir configs)
    "streamlsm.pipeline": 3,
    "streamlsm.training": 3,       # torch training of readouts, metrics
    "streamlsm.tally": 3,          # what a reader of the streams counts (subscribe, console sink)
    "streamlsm.loop": 4,           # the processing loop every server runs (daemon, scale-out shard)
    "streamlsm.experiments": 4,
    "streamlsm.net.transport": 4,
    "streamlsm.net.security": 4,
    "streamlsm.net.publisher": 5,  # a PUB sender (XPUB) that knows its subscriptions
    "streamlsm.stream.live": 5,    # live sensors: LiveSender (a zmq sender) and the LiveSource plug-ins
    "streamlsm.daemon": 5,         # config, buffer, sinks, control, the asyncio runtime
    "streamlsm.cluster": 6,        # scale-out on Ray: gateway, shard and registry actors (the daemon's parts)
    "streamlsm.testing": 6,        # test doubles and process helpers: tests/ and bench/ only
    "streamlsm.cli": 7,
    "streamlsm.__main__": 8,  # `python -m streamlsm`: runs the CLI
}
# third-party imports allowed only under these prefixes
ONLY_IN = {
    "numba": ("streamlsm.reservoir.kernel",),
    "msgpack": ("streamlsm.net.wire",),
    "torch": ("streamlsm.training.train", "streamlsm.training.lbfgs", "streamlsm.training.losses",
              "streamlsm.training.heads",
              "streamlsm.experiments", "streamlsm.cli"),
    "zmq": ("streamlsm.net.transport", "streamlsm.net.security", "streamlsm.net.peers", "streamlsm.net.publisher",
            "streamlsm.stream.live", "streamlsm.daemon", "streamlsm.cluster", "streamlsm.cli",
            "streamlsm.testing"),
    "asyncio": ("streamlsm.stream.pacing", "streamlsm.net.transport", "streamlsm.net.publisher", "streamlsm.daemon",
                "streamlsm.cluster", "streamlsm.cli", "streamlsm.testing"),
    "ray": ("streamlsm.cluster",),  # the scale-out only: the edge daemon and its install never import it
    "aiostream": ("streamlsm.stream.pacing", "streamlsm.net.transport", "streamlsm.daemon", "streamlsm.cluster", "streamlsm.cli",
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
            if module == "streamlsm.reservoir.kernel" and top not in KERNEL_ALLOWED:
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


def _graph() -> dict[str, set[str]]:
    """streamlsm module -> the streamlsm modules it imports (anywhere in the file, late imports too)."""
    mods = dict(_modules())
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for imp in _imports(module, path):
            while imp and imp not in mods:  # `from .pkg import name`: the module, or its package
                imp = imp.rpartition(".")[0]
            if imp and imp != module:
                graph[module].add(imp)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_package_init(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__init__.py").is_file()


def test_no_circles_between_modules():
    # a package's __init__ re-exporting its modules is no circle; anything else that imports back is
    graph = {m: {t for t in ts if not (_is_package_init(t) and m.startswith(t + "."))}
             for m, ts in _graph().items()}
    assert not _circles(graph), f"import circles: {_circles(graph)}"


def test_circle_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_production_code_never_imports_test_helpers():
    problems = []
    for module, path in _modules():
        if module.startswith("streamlsm.testing"):
            continue
        problems += [f"{module} imports {imp}" for imp in _imports(module, path)
                     if imp == "streamlsm.testing" or imp.startswith("streamlsm.testing.")]
    for folder in ("sources", "sinks"):
        for path in (ROOT / folder).rglob("*.py"):
            problems += [f"{path.name} imports {imp}" for imp in _imports("x.y", path)
                         if imp.startswith("streamlsm.testing")]
    assert not problems, "\n".join(problems)


def test_the_design_note_names_only_files_that_exist():
    """docs/design.md, the newcomer's map: every file it names in backticks and every package of
    its tree exists, and every package of streamlsm/ is on the map."""
    import re

    text = (ROOT / "docs" / "design.md").read_text()
    named = set(re.findall(r"`((?:streamlsm|sources|sinks|tests)/[\w/]+\.py)`", text))
    assert len(named) >= 10
    assert not [p for p in named if not (ROOT / p).is_file()]
    tree = text.split("```")[1]
    drawn = {name for line in tree.splitlines() if re.match(r"  \w", line)
             for name in re.findall(r"(?:^|\s)(\w+)/", line.split("  ")[1] if "  " in line[2:] else line)}
    packages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert drawn == packages, f"tree draws {sorted(drawn)}, streamlsm/ holds {sorted(packages)}"
    for folder in drawn:
        block = re.split(r"\n  \S", tree.split(f"  {folder}/", 1)[1], maxsplit=1)[0] if f"  {folder}/" in tree else ""
        for name in re.findall(r"(\w+)\.py", block):
            assert (PKG / folder / f"{name}.py").is_file(), f"docs/design.md names {folder}/{name}.py"
