"""The CLI with bad values: every command ends with one line naming the problem, never a traceback
(issue 11, item 10 and 11, and the endpoint cases of the minor list)."""

from __future__ import annotations

import json

import pytest

from streamlsm.cli import main
from streamlsm.testing import make_bundle

pytestmark = pytest.mark.timeout(120)


def _write(path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _bundle(tmp_path, name, edit=None):
    path = tmp_path / name
    make_bundle(8, 4).save(path)
    if edit is not None:
        m = json.loads((path / "manifest.json").read_text())
        text = edit(m)
        (path / "manifest.json").write_text(text if isinstance(text, str) else json.dumps(m))
    return path


def _config(tmp_path, extra: str) -> str:
    bundle = _bundle(tmp_path, "b_ok")
    return str(_write(tmp_path / f"cfg{abs(hash(extra))}.toml",
                      f'[model]\nbundle = "{bundle}"\nprototypes = "{tmp_path / "p.json"}"\n{extra}'))


def _cases(tmp_path):
    key = tmp_path / "sign.key"
    main(["keys", "signing", str(key)])
    heads_list = _bundle(tmp_path, "b_heads", lambda m: m.update(heads=[]))
    layers_inf = _bundle(tmp_path, "b_layers", lambda m: m["heads"]["vision"].update(layers=float("inf")))
    deep = _bundle(tmp_path, "b_deep", lambda m: json.dumps(m)[:-1] + ', "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
    a_file = _write(tmp_path / "a_file", "x")
    return {
        "config is a directory": (["serve", "--config", str(tmp_path)], "directory"),
        "config not UTF-8": (["serve", "--config", str(_write(tmp_path / "bin.toml", b"\xff\xfe\x00x = 1"))],
                             "UTF-8"),
        "stats_every_s = 0": (["serve", "--config", _config(tmp_path, "[limits]\nstats_every_s = 0\n")],
                              "stats_every_s"),
        "prometheus port 99999": (["serve", "--config", _config(
            tmp_path, '[[outputs.sinks]]\nname = "prometheus"\noptions = { port = 99999 }\n')], "port"),
        "prometheus on 0.0.0.0": (["serve", "--config", _config(
            tmp_path, '[[outputs.sinks]]\nname = "prometheus"\noptions = { port = 0, addr = "0.0.0.0" }\n')],
            "loopback"),
        "relay hwm -5": (["serve", "--config", _config(
            tmp_path, '[[outputs.sinks]]\nname = "relay"\noptions = { endpoint = "tcp://127.0.0.1:0", hwm = -5 }\n')],
            "hwm"),
        "labels on port 99999": (["serve", "--config", _config(
            tmp_path, '[outputs]\nlabels = "tcp://127.0.0.1:99999"\n')], "99999"),
        "signing key missing": (["serve", "--config", _config(
            tmp_path, f'signing_key = "{tmp_path / "nokey"}"\n')], "not found"),
        "unsigned bundle": (["serve", "--config", _config(tmp_path, f'signing_key = "{key}"\n')], "unsigned"),
        "ctl --timeout inf": (["ctl", "--endpoint", "tcp://127.0.0.1:1", "--timeout", "inf", "status"], "timeout"),
        "ctl --timeout nan": (["ctl", "--endpoint", "tcp://127.0.0.1:1", "--timeout", "nan", "status"], "timeout"),
        "ctl foo://bar": (["ctl", "--endpoint", "foo://bar", "--timeout", "1", "status"], "foo://bar"),
        "subscribe --bind foo://bar": (["subscribe", "foo://bar", "--bind", "--timeout", "1"],
                                       "unknown transport"),
        "keys make onto a file": (["keys", "make", str(a_file)], "not a directory"),
        "keys signing onto a key": (["keys", "signing", str(key)], "exists"),
        "keys signing onto a dir": (["keys", "signing", str(tmp_path)], "directory"),
        "sign: heads []": (["keys", "sign", str(heads_list), "--key", str(key)], "heads"),
        "sign: layers Infinity": (["keys", "sign", str(layers_inf), "--key", str(key)], "layers"),
        "sign: deep manifest": (["keys", "sign", str(deep), "--key", str(key)], "nested"),
        "sign: not a key": (["keys", "sign", str(heads_list), "--key", str(a_file)], "signing key"),
        "subscribe port 99999": (["subscribe", "tcp://127.0.0.1:99999", "--timeout", "1"], "99999"),
        "replay unknown dataset": (["replay", "nope", "--root", str(tmp_path)], "nope"),
        "data info missing": (["data", "info", str(tmp_path / "missing")], "missing"),
    }


def test_every_bad_value_is_one_line_naming_the_problem(tmp_path, capsys):
    problems = []
    for name, (argv, says) in _cases(tmp_path).items():
        capsys.readouterr()
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse: usage + one error line
            rc = exc.code
        except BaseException as exc:  # noqa: BLE001 - the thing under test: nothing may escape
            problems.append(f"{name}: raised {type(exc).__name__}: {exc}")
            continue
        err = capsys.readouterr().err.strip()
        if "Traceback" in err:
            problems.append(f"{name}: traceback")
        elif rc in (0, None):
            problems.append(f"{name}: exit status {rc}")
        elif says.lower() not in err.splitlines()[-1].lower() if err else True:
            problems.append(f"{name}: last line {err.splitlines()[-1:]!r} does not say {says!r}")
    assert not problems, "\n".join(problems)
