"""Every example of docs/interop.md runs as written: its Python blocks (in a child process, from the
repository root), its shell commands and its TOML sink table."""

from __future__ import annotations

import inspect
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from streamlsm.cli import main
from streamlsm.plugins import SINK_GROUP, load

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "interop.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def test_the_doc_has_its_examples():
    assert len(_blocks("python")) == 2 and len(_blocks("bash")) == 1 and len(_blocks("toml")) == 1


@pytest.mark.realdata
@pytest.mark.parametrize("k", [0, 1])
def test_python_examples_run(real_data, k):
    pytest.importorskip("expelliarmus", reason="the example needs pip install 'streamlsm[sensors]'")
    pytest.importorskip("tonic", reason="the example needs pip install 'streamlsm[tonic]'")
    if real_data.resolve() != (ROOT.parent / "shared" / "data").resolve():
        pytest.skip("the examples name ../shared/data; STREAMLSM_DATA points elsewhere")
    code = _blocks("python")[k]
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    if k == 0:
        assert res.stdout.splitlines()[0] == "(1280, 720, 2) 11718656"


@pytest.mark.realdata
def test_shell_examples_run(real_data, capsys):
    pytest.importorskip("aedat", reason="the example needs pip install 'streamlsm[sensors]'")
    if real_data.resolve() != (ROOT.parent / "shared" / "data").resolve():
        pytest.skip("the examples name ../shared/data; STREAMLSM_DATA points elsewhere")
    lines = [ln.strip() for b in _blocks("bash") for ln in b.splitlines() if ln.strip()]
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for ln in lines:
            assert ln.startswith("streamlsm ")
            assert main(shlex.split(ln)[1:]) == 0, ln
    finally:
        os.chdir(cwd)
    assert "AEDAT4Dataset: 1 samples, layout dvs, sensor (320, 240, 2)" in capsys.readouterr().out


def test_toml_sink_table_fits_the_lsl_sink():
    table = tomllib.loads(_blocks("toml")[0])
    (spec,) = table["outputs"]["sinks"]
    assert spec["name"] == "lsl"
    from streamlsm_sinks.lsl import LSLMarkerSink

    assert load(SINK_GROUP, "lsl") is LSLMarkerSink
    inspect.signature(LSLMarkerSink).bind(**spec["options"])  # TypeError for an unknown option
