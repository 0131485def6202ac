"""CLI `streamlsm replay` and `streamlsm subscribe` end to end (subprocess subscriber on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from streamlsm.cli import build_parser, main
from streamlsm.cli.replay import parse_options
from streamlsm.errors import ConfigError
from streamlsm.events import DVS_DTYPE, EventPacket, LabelEvent
from streamlsm.net.transport import Sender
from streamlsm.stream.replay import ReplayConfig, schedule
from streamlsm.tally import Tally


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_subscriber(*extra):
    """A PULL subscriber process bound to a free port (chosen by ZeroMQ: no race for it)."""
    cmd = [sys.executable, "-c", "import sys; from streamlsm.cli import main; sys.exit(main())",
           "subscribe", "tcp://127.0.0.1:*", "--kind", "pull", "--bind",
           "--timeout", "20", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # "subscribe: pull bound to <endpoint>" once the socket is bound
    if "bound to" not in line:
        proc.kill()
        _out, err = proc.communicate(timeout=30)
        pytest.fail(f"subscriber did not bind: {line}{err[-3000:]}")
    return proc, line.split("bound to", 1)[1].strip()


def finish(proc):
    """The subscriber's JSON lines and summary; it is killed (never left running) if it hangs."""
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate(timeout=30)
        pytest.fail(f"subscriber did not finish: {err[-3000:]}")
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    return lines[:-1], lines[-1]


def n_scheduled(ds, cfg) -> int:
    return sum(1 for _ in schedule(ds, "x", cfg))


def test_commands_are_registered():
    parser = build_parser()
    args = parser.parse_args(["replay", "nmnist", "--root", "x", "--speed", "max", "--streams", "2"])
    assert args.command == "replay" and args.speed == "max" and args.streams == 2
    args = parser.parse_args(["subscribe", "tcp://127.0.0.1:1", "--count", "3", "--quiet"])
    assert args.count == 3 and args.quiet and args.kind == "sub"


def test_parse_options():
    assert parse_options(["split=test", "limit=5", "x=1.5", "sort=true", "y=none"]) == \
        {"split": "test", "limit": 5, "x": 1.5, "sort": True, "y": None}
    with pytest.raises(ConfigError):
        parse_options(["novalue"])


def test_unknown_dataset_is_a_clean_error(capsys):
    assert main(["replay", "no-such-dataset", "--root", "."]) == 1
    assert "no plug-in named" in capsys.readouterr().err


def test_bad_values_are_clean_errors_naming_the_option(capsys):
    for argv, key in ((["subscribe", "tcp://127.0.0.1:1", "--timeout", "-1"], "timeout"),
                      (["subscribe", "tcp://127.0.0.1:1", "--count", "0"], "count"),
                      (["ctl", "--endpoint", "garbage", "status"], "endpoint"),
                      (["ctl", "--endpoint", "tcp://127.0.0.1:1", "--timeout", "0", "status"], "timeout")):
        assert main(argv) == 1, argv
        assert f"config {key}:" in capsys.readouterr().err, argv


def test_subscribe_prints_packets_labels_and_summary():
    proc, endpoint = start_subscriber("--count", "5")

    async def send():
        async with Sender(endpoint, "push", bind=False, linger_ms=5000) as tx:
            for seq in (0, 1, 3, 3):  # a gap (2) and a duplicate (3)
                ev = np.zeros(4, dtype=DVS_DTYPE)
                ev["t"] = [0, 1, 2, 3]
                await tx.send(EventPacket("cam", seq, 0, 10, ev, "vision", 1, "7", seq == 0, seq == 3))
            await tx.send(LabelEvent("cam", 0, 0, 10, "7", 0.8, [("7", 0.8)], truth="7",
                                     source_ns=time.time_ns()))
            await asyncio.sleep(0.5)

    try:
        asyncio.run(send())
    finally:
        lines, summary = finish(proc)
    assert [x.get("seq") for x in lines[:4]] == [0, 1, 3, 3]
    assert lines[0]["n"] == 4 and lines[0]["label"] == "7" and lines[0]["begin"] is True
    assert lines[0]["latency_ms"] is not None
    assert [x["type"] for x in lines] == ["packet"] * 4 + ["label"]
    assert lines[4]["label"] == "7" and lines[4]["truth"] == "7" and lines[4]["score"] == 0.8
    assert summary["type"] == "summary" and lines[4]["latency_ms"] >= 0
    assert summary["label_latency_ms"]["n"] == 1
    assert summary["summary"] and summary["messages"] == 5 and summary["labels"] == 1
    assert summary["streams"]["cam"]["gaps"] == 1 and summary["duplicates"] == 1
    assert summary["events"] == 16 and summary["latency_ms"]["n"] == 4


def test_stream_tally():
    t = Tally()
    ev = np.zeros(2, dtype=DVS_DTYPE)
    for seq in (5, 6, 9, 7):
        t.packet(EventPacket("a", seq, 0, 5, ev, sent_ns=1_000_000), 3_000_000)
    s = t.summary()
    assert s["streams"]["a"]["first_seq"] == 5 and s["streams"]["a"]["last_seq"] == 9
    assert s["gaps"] == 2 and s["duplicates"] == 1 and s["latency_ms"]["p50"] == pytest.approx(2.0)
    assert Tally().summary()["latency_ms"]["p50"] is None


def test_tally_counts_labels_on_seen_and_unseen_classes_and_abstentions():
    from streamlsm.events import LabelEvent

    t = Tally(unseen=["8"])
    for label, truth in (("1", "1"), ("2", "1"), ("8", "8"), ("unknown", "8"), ("3", None)):
        t.label(LabelEvent("s", 0, 0, 1, label, 0.5, truth=truth, received_ns=1_000_000, source_ns=0), 4_000_000)
    s = t.summary()
    assert (s["labels"], s["abstained"], s["accuracy"]) == (5, 1, 0.5)
    assert (s["seen_accuracy"], s["seen_n"], s["unseen_accuracy"], s["unseen_n"]) == (0.5, 2, 0.5, 2)
    assert s["server_latency_ms"]["p50"] == pytest.approx(3.0) and s["label_latency_ms"]["n"] == 0


@pytest.mark.realdata
def test_replay_real_nmnist_to_subscriber_loses_nothing(real_data, capsys):
    from streamlsm_sources.nmnist import NMNISTDataset

    ds = NMNISTDataset(real_data / "nmnist", limit=30)
    total = sum(len(ds.events(i)) for i in range(len(ds)))
    n_packets = sum(n_scheduled(ds, ReplayConfig(packet_us=5000, order="shuffle", seed=seed,
                                                 gap_us=100)) for seed in (4, 5))
    proc, endpoint = start_subscriber("--quiet", "--count", str(n_packets))
    try:
        rc = main(["replay", "nmnist", "--root", str(real_data / "nmnist"), "-o", "limit=30",
                   "--endpoint", endpoint, "--connect", "--speed", "max", "--packet-us", "5000",
                   "--streams", "2", "--order", "shuffle", "--seed", "4", "--gap-us", "100"])
    finally:
        lines, summary = finish(proc)
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["events"] == 2 * total and report["dropped"] == 0
    assert lines == []  # --quiet
    assert summary["events"] == 2 * total and summary["gaps"] == 0 and summary["duplicates"] == 0
    assert summary["packets"] == report["sent"] == n_packets
    assert set(summary["streams"]) == {"nmnist.0", "nmnist.1"}
    for s in summary["streams"].values():
        assert s["first_seq"] == 0 and s["last_seq"] == s["packets"] - 1 and s["samples"] == 30
    assert summary["wire_errors"] == 0


@pytest.mark.realdata
def test_binding_off_loopback_needs_keys(real_data, capsys):
    rc = main(["replay", "nmnist", "--root", str(real_data / "nmnist"), "-o", "limit=1",
               "--endpoint", "tcp://0.0.0.0:5599", "--speed", "max"])
    assert rc == 1 and "requires CURVE" in capsys.readouterr().err


@pytest.mark.realdata
def test_replay_with_curve_keys(real_data, tmp_path, capsys):
    from streamlsm_sources.nmnist import NMNISTDataset

    from streamlsm.net.security import make_keys

    make_keys(tmp_path / "keys")
    ds = NMNISTDataset(real_data / "nmnist", limit=3)
    n_packets = n_scheduled(ds, ReplayConfig(packet_us=50_000))
    proc, endpoint = start_subscriber("--quiet", "--count", str(n_packets),
                                      "--keys", str(tmp_path / "keys"))
    try:
        rc = main(["replay", "nmnist", "--root", str(real_data / "nmnist"), "-o", "limit=3",
                   "--endpoint", endpoint, "--connect", "--speed", "max", "--packet-us", "50000",
                   "--keys", str(tmp_path / "keys")])
    finally:
        _, summary = finish(proc)
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["events"] == report["events"] > 0 and summary["gaps"] == 0
    assert summary["packets"] == report["sent"] == n_packets


@pytest.mark.realdata
def test_replay_over_pub_sub(real_data, capsys):
    from streamlsm_sources.nmnist import NMNISTDataset

    ds = NMNISTDataset(real_data / "nmnist", limit=3)
    n_packets = n_scheduled(ds, ReplayConfig(packet_us=2000))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-c", "import sys; from streamlsm.cli import main; sys.exit(main())",
           "subscribe", endpoint, "--kind", "sub", "--topic", "ev/", "--count", str(n_packets),
           "--timeout", "20", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "connected to" in proc.stderr.readline()
    try:
        rc = main(["replay", "nmnist", "--root", str(real_data / "nmnist"), "-o", "limit=3",
                   "--endpoint", endpoint, "--socket", "pub", "--hwm", "100000",
                   "--start-delay", "2.0", "--speed", "max", "--packet-us", "2000"])
    finally:
        _, summary = finish(proc)
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["dropped"] == 0 and report["sent"] == n_packets
    assert summary["packets"] == n_packets and summary["gaps"] == 0
