"""Output for people and the first hour: peers that are not there, PUB counting, --pretty, help, errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
import zmq.asyncio

from streamlsm.cli import build_parser, main
from streamlsm.errors import ControlError
from streamlsm.events import DVS_DTYPE, EventPacket, LabelEvent
from streamlsm.net.peers import PeerWatch
from streamlsm.net.publisher import Publisher

CLI = [sys.executable, "-m", "streamlsm"]


def _free_endpoint() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _pkt(stream: str, seq: int, n: int = 3) -> EventPacket:
    ev = np.zeros(n, DVS_DTYPE)
    ev["t"] = np.arange(n)
    return EventPacket(stream, seq, 0, n, ev, "vision", 0, "1", seq == 0, False)


def test_peer_watch_counts_handshakes_disconnects_and_failures():
    from streamlsm.net.peers import CLOSED_IN_HANDSHAKE

    ctx = zmq.Context()
    try:
        sub = ctx.socket(zmq.SUB)
        watch = PeerWatch()
        watch(sub)
        pub = ctx.socket(zmq.PUB)
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        sub.connect(f"tcp://127.0.0.1:{port}")
        assert watch.wait(30.0) and watch.peers == 1 and watch.handshakes == 1
        pub.close(0)
        deadline = time.monotonic() + 30
        while watch.poll(0.1) and time.monotonic() < deadline:
            pass
        assert watch.peers == 0 and watch.handshakes == 1
        watch.close()
        sub.close(0)

        pull = ctx.socket(zmq.SUB)  # a SUB facing a PUSH: ZeroMQ refuses the pair
        bad = PeerWatch()
        bad(pull)
        push = ctx.socket(zmq.PUSH)
        port = push.bind_to_random_port("tcp://127.0.0.1")
        pull.connect(f"tcp://127.0.0.1:{port}")
        assert not bad.wait(1.0)
        assert bad.failed >= 1 and bad.last_failure == CLOSED_IN_HANDSHAKE and bad.peers == 0
        bad.close()
    finally:
        ctx.destroy(linger=0)


def test_publisher_waits_for_a_subscriber_and_counts_what_no_one_heard():
    async def go():
        ctx = zmq.asyncio.Context()
        try:
            async with Publisher("tcp://127.0.0.1:*", context=ctx) as pub:
                assert not await pub.send(_pkt("cam0", 0))  # nobody there: counted, not sent
                assert not await pub.wait_for_subscriber(timeout=0.2)
                other = ctx.socket(zmq.SUB)
                other.setsockopt(zmq.SUBSCRIBE, b"ev/cam1")  # another stream only
                other.connect(pub.endpoint)
                sub = ctx.socket(zmq.SUB)
                sub.setsockopt(zmq.SUBSCRIBE, b"ev/cam0")
                await asyncio.sleep(0.3)
                assert not await pub.send(_pkt("cam0", 1))  # cam1's subscription does not match
                sub.connect(pub.endpoint)
                said = []
                assert await pub.wait_for_subscriber(b"ev/cam0", timeout=30, every_s=0.0,
                                                     say=said.append)
                assert await pub.send(_pkt("cam0", 2))
                got = await asyncio.wait_for(sub.recv_multipart(), 30)
                assert got[0] == b"ev/cam0"
                sub.close(0)
                deadline = time.monotonic() + 30
                while pub.heard(b"ev/cam0") and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)  # the unsubscription arrives when it disconnects
                assert not await pub.send(_pkt("cam0", 3))
                other.close(0)
                return dict(pub.stats)
        finally:
            ctx.term()

    stats = asyncio.run(go())
    assert stats["sent"] == 1 and stats["unheard"] == 3 and stats["unheard_events"] == 9
    assert stats["dropped"] == 0


def test_pretty_lines_show_running_accuracy_and_packet_rates():
    import io

    from streamlsm.cli.subscribe import Pretty
    from streamlsm.tally import Tally

    out = io.StringIO()
    tally = Tally()
    pretty = Pretty(out, tally)

    def show(lab, lat):  # as subscribe does: count, then print
        tally.label(lab, 0)
        pretty.label(lab, lat)

    def lab(label, truth):
        return LabelEvent(stream_id="cam0", seq=0, t_start=0, t_end=1, label=label, score=0.5,
                          topk=[(label, 0.5)], margin=0.1, truth=truth)

    show(lab("3", "3"), 1.25)
    show(lab("4", "5"), None)
    show(lab("7", None), None)
    lines = out.getvalue().splitlines()
    assert lines[0] == "cam0         3          +0.500  truth 3        ok    acc 100.0% of 1     1.2 ms"
    assert lines[1] == "cam0         4          +0.500  truth 5        MISS  acc  50.0% of 2"
    assert lines[2] == "cam0         7          +0.500  truth -              acc  50.0% of 2"
    show(lab("unknown", "6"), None)  # an abstention is marked as such, not as a wrong guess
    assert out.getvalue().splitlines()[3] == "cam0         unknown    +0.500  truth 6        abst  acc  33.3% of 3"
    pretty.packet(_pkt("a", 0), 0, 10.0)  # the first packet starts the clock
    for k in range(1, 5):
        pretty.packet(_pkt("a", k), 2, 10.0 + k * 0.25)
    # 5 packets of 3 events in the second from the first one
    assert out.getvalue().splitlines()[-1] == "packets: 5/s, 15 events/s on 1 stream(s), 2 sequence gaps so far"


def test_subscribe_and_push_replay_say_when_nobody_is_there(real_data):
    endpoint = _free_endpoint()
    sub = subprocess.Popen(CLI + ["subscribe", endpoint, "--timeout", "8"], stderr=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    rep = subprocess.Popen(CLI + ["replay", "nmnist", "--root", str(real_data / "nmnist"), "--limit",
                                  "1", "--hwm", "10", "--connect", "--endpoint", _free_endpoint()],
                           stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        _, err = sub.communicate(timeout=60)
        assert "subscribe: nothing answers at " + endpoint in err and "is a publisher" in err
        deadline = time.monotonic() + 60
        line = ""
        while "no consumer" not in line and time.monotonic() < deadline:
            line = rep.stderr.readline()
        assert "replay: no consumer to connect to" in line and "--kind pull --bind" in line
    finally:
        rep.kill()
        rep.communicate(timeout=30)


def test_subscribe_facing_a_push_replay_names_the_mismatch(real_data):
    endpoint = _free_endpoint()
    rep = subprocess.Popen(CLI + ["replay", "nmnist", "--root", str(real_data / "nmnist"), "--limit", "1",
                                  "--socket", "push", "--endpoint", endpoint],
                           stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert "push bound to" in rep.stderr.readline()
        sub = subprocess.run(CLI + ["subscribe", endpoint, "--timeout", "3"], capture_output=True,
                             text=True, timeout=60)
        assert "failed the handshake (closed during the handshake: socket types that cannot talk" in sub.stderr
        assert "a SUB talks to a PUB" in sub.stderr
    finally:
        rep.kill()
        rep.communicate(timeout=30)


def test_ctl_says_when_no_daemon_answers_before_the_reply_timeout():
    from streamlsm.cli.ctl import request

    endpoint = _free_endpoint()
    with pytest.raises(ControlError, match=r"is `streamlsm serve` running at tcp://127\.0\.0\.1:\d+\?"):
        request(endpoint, {"cmd": "status"}, timeout=600.0, connect_s=0.5)  # would hang 10 min


def test_register_outside_the_allowed_folders_names_control_allowed_dirs(tmp_path):
    from streamlsm.net.security import confine

    assert confine(str(tmp_path / "a.npz"), [str(tmp_path)]) == (tmp_path / "a.npz").resolve()
    with pytest.raises(ControlError, match=r"lies outside control\.allowed_dirs \[.*\]: put it in one"):
        confine(str(tmp_path.parent / "elsewhere"), [str(tmp_path)])


def test_bad_dataset_option_lists_the_valid_ones(real_data, capsys):
    assert main(["replay", "nmnist", "--root", str(real_data / "nmnist"), "-o", "foo=1"]) == 1
    err = capsys.readouterr().err
    assert "nmnist has no option 'foo'; valid: split='train', on_error='raise', limit=None, sort=False" in err


def test_help_shows_defaults_plugins_and_python_m_works():
    top = build_parser().format_help()
    assert "streamlsm.sources: " in top and "nmnist" in top and "streamlsm.live: playback" in top
    replay = subprocess.run(CLI + ["replay", "--help"], capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0 and "(default: 1000)" in replay.stdout  # --hwm
    assert "auditory-cortex" in replay.stdout  # the data set names
    for action in ("make", "cochlea", "info"):
        text = subprocess.run(CLI + ["data", action, "--help"], capture_output=True, text=True,
                              timeout=60).stdout
        assert text.split("\n\n")[1].strip() and not text.split("\n\n")[1].startswith("positional")
    version = subprocess.run(CLI + ["--version"], capture_output=True, text=True, timeout=60)
    from streamlsm import __version__

    assert version.returncode == 0 and version.stdout.strip() == __version__


@pytest.mark.parametrize("where, dataset, expect", [
    (("neural", "stn"), None, "(2 panels, one sample per class, 2 classes)"),
    (("nmnist", "Train", "3"), "first-bin", "(1 panels, one sample per class, 1 classes)"),
    (("nas_cochlea", "sound_mono_32ch_ONOFF_addr2b_ts02.aedat"), None, "(1 panels, 1 of 1 unlabelled samples)"),
    (("nmnist",), "nmnist", "(10 panels, one sample per class, 10 classes)"),
])
def test_data_info_reads_every_reader_one_panel_per_class(real_file, tmp_path, capsys, where, dataset, expect):
    path = real_file(*where)
    extra = []
    if dataset == "first-bin":
        path = sorted(path.glob("*.bin"))[0]
    elif dataset:
        extra = ["--dataset", dataset, "-o", "limit=20"]
    assert main(["data", "info", str(path), "--png", str(tmp_path / "p.png"), "--limit", "20", *extra]) == 0
    out = capsys.readouterr().out
    assert expect in out and (tmp_path / "p.png").stat().st_size > 5_000


def test_data_info_names_what_it_knows(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("hello")
    assert main(["data", "info", str(tmp_path)]) == 1
    assert "name its reader with --dataset NAME" in capsys.readouterr().err


def test_serve_status_line():
    from streamlsm.cli.serve import status_line

    before = {"received": 100, "labels": 4}
    now = {"received": 300, "labels": 8, "streams": 2, "queue_depth": 3, "queue_limit": 10,
           "dropped": 1, "wire_errors": 0, "sink_errors": 0, "classes": ["0", "1"],
           "real_time_factor": 0.25}
    assert status_line(now, before, 2.0) == (
        "received 300 packets (100/s), 8 labels (2/s); 2 streams; queue 3/10; dropped 1, wire "
        "errors 0, sink errors 0; 2 classes; real-time factor 0.250")


def test_replay_progress_bar_counts_samples_on_stderr(real_data):
    r = subprocess.run(CLI + ["replay", "nmnist", "--root", str(real_data / "nmnist"), "--limit", "3",
                              "--speed", "max", "--no-wait", "--progress", "on",
                              "--endpoint", _free_endpoint()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "replay: 100%" in r.stderr and "3/3" in r.stderr
    assert "replay: 100%" not in r.stdout  # stdout keeps only the JSON summary
    quiet = subprocess.run(CLI + ["replay", "nmnist", "--root", str(real_data / "nmnist"), "--limit", "1",
                                  "--speed", "max", "--no-wait", "--endpoint", _free_endpoint()],
                           capture_output=True, text=True, timeout=120)
    assert "%|" not in quiet.stderr  # auto: no bar when stderr is not a terminal


def test_live_command_lists_valid_options(capsys):
    assert main(["live", "playback", "-o", "colour=red"]) == 1
    err = capsys.readouterr().err
    assert "playback has no option colour; valid: dataset='nmnist', root=''" in err


def test_console_sink_marks_an_abstention_with_its_best_guess():
    import io

    from streamlsm_sinks.console import ConsoleSink

    out = io.StringIO()
    sink = ConsoleSink(every_s=3600.0, stream=out)
    for label, truth in (("3", "3"), ("4", "5"), ("unknown", "6")):
        sink.write(LabelEvent(stream_id="cam0", seq=0, t_start=0, t_end=1, label=label, score=0.5,
                              topk=[("8" if label == "unknown" else label, 0.5)], margin=0.1, truth=truth,
                              probability=0.51))
    lines = [ln for ln in out.getvalue().splitlines() if "->" in ln]
    assert lines[0].endswith("truth 3  ok") and lines[1].endswith("truth 5  MISS")
    assert lines[2].endswith("truth 6  abstained (best 8)") and "p=0.51" in lines[2]
