"""transport: PUSH/PULL and PUB/SUB over tcp (127.0.0.1), ipc and inproc; drops, wire errors, streams."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
import zmq
import zmq.asyncio

from streamlsm.errors import ConfigError, TransportError
from streamlsm.events import COCHLEA_DTYPE, DVS_DTYPE, EventPacket, LabelEvent
from streamlsm.net.transport import Receiver, Sender
from streamlsm.stream.pacing import pace
from streamlsm.stream.replay import ReplayConfig, merge, schedule, stream_ids

TCP = "tcp://127.0.0.1:*"


def packet(seq=0, n=100, stream="s0", dtype=DVS_DTYPE):
    ev = np.zeros(n, dtype=dtype)
    ev["t"] = np.arange(n) * 3
    ev["x"] = np.arange(n) % 30
    return EventPacket(stream, seq, 0, 3 * n + 1, ev, "vision", 7, "3", seq == 0, False)


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def subscribed(tx, rx, probe, timeout=0.02):
    """Send ``probe`` packets until ``rx`` receives one: PUB discards silently until the
    subscription has arrived. A probe still in flight when this returns may arrive later."""
    for _ in range(200):
        await tx.send(probe)
        if await rx.recv(timeout=timeout) is not None:
            return
    raise AssertionError("subscription never arrived")


async def drain(rx, n, timeout=5.0):
    out = []
    while len(out) < n:
        msg = await rx.recv(timeout=timeout)
        if msg is None:
            break
        out.append(msg)
    return out


@pytest.mark.parametrize("where", ["tcp", "ipc", "inproc"])
def test_push_pull_round_trip(where, tmp_path):
    endpoint = {"tcp": TCP, "ipc": f"ipc://{tmp_path}/s.sock", "inproc": "inproc://test-rt"}[where]

    async def main():
        async with Sender(endpoint, "push") as tx, Receiver(tx.endpoint, "pull") as rx:
            sent = [packet(i, n=50 + i) for i in range(20)]
            sent.append(dataclasses.replace(packet(20, dtype=COCHLEA_DTYPE), modality="audio"))
            for p in sent:
                assert await tx.send(p)
            lab = LabelEvent("s0", 3, 0, 10, "3", 0.9, [("3", 0.9), ("8", 0.1)], truth="3")
            await tx.send(lab)
            got = await drain(rx, len(sent) + 1)
            return sent, got, lab, tx.stats, rx.stats

    sent, got, lab, txs, rxs = run(main())
    assert len(got) == len(sent) + 1
    for a, b in zip(sent, got, strict=False):
        assert (b.stream_id, b.seq, b.t_start, b.t_end, b.label, b.sample_id, b.modality) == \
               (a.stream_id, a.seq, a.t_start, a.t_end, a.label, a.sample_id, a.modality)
        assert b.sent_ns > 0 and b.sent_ns == a.sent_ns
        np.testing.assert_array_equal(b.events, a.events)
    assert got[-1] == dataclasses.replace(lab)
    assert txs["sent"] == rxs["received"] == len(sent) + 1 and txs["dropped"] == 0
    assert rxs["events"] == sum(len(p.events) for p in sent) and rxs["labels"] == 1


def test_pub_drops_at_hwm_are_counted_with_a_stalled_subscriber():
    async def main():
        async with Sender("inproc://test-pub", "pub", hwm=20) as tx, \
                Receiver(tx.endpoint, "sub", hwm=20) as rx:
            await subscribed(tx, rx, packet(0, n=1, stream="probe"))
            while await rx.recv(timeout=0.05) is not None:
                pass
            before = dict(tx.stats)
            results = [await tx.send(packet(i, n=200)) for i in range(500)]  # nobody reads
            after = tx.stats
            got = await drain(rx, 1000, timeout=0.2)
            return results, before, after, got

    results, before, after, got = run(main())
    dropped = after["dropped"] - before["dropped"]
    sent = after["sent"] - before["sent"]
    assert dropped > 0 and dropped == results.count(False)
    assert sent + dropped == 500
    assert len(got) == sent  # every message not counted as dropped arrived
    assert [p.seq for p in got] == [i for i, ok in enumerate(results) if ok]


@pytest.mark.parametrize("nodrop", [False, True])
def test_a_full_subscriber_costs_only_itself_without_nodrop(nodrop):
    """nodrop=False (the daemon's label PUB): a subscriber that stops reading loses messages at its
    own high-water mark, a healthy one on the same socket gets every message. With XPUB_NODROP one
    full peer made every later message a drop for everyone (issue 11, item 3): shown as the contrast.
    (ZeroMQ learns what a peer has read in steps of half its HWM: keep the HWM well above a
    burst, as the daemon's default 10,000 is, or a fast peer can see drops too.)"""
    async def main():
        async with Sender(f"inproc://test-pub-peer-{nodrop:d}", "pub", hwm=200, nodrop=nodrop) as tx, \
                Receiver(tx.endpoint, "sub", hwm=200) as healthy, \
                Receiver(tx.endpoint, "sub", hwm=200) as stalled:
            for rx in (healthy, stalled):  # both subscribed before the test starts
                await subscribed(tx, rx, packet(0, n=1, stream="probe"))
            for rx in (healthy, stalled):
                while await rx.recv(timeout=0.05) is not None:
                    pass
            got = []
            for i in range(1500):  # the healthy one reads each message at once, the stalled one never
                await tx.send(packet(i, n=5))
                msg = await healthy.recv(timeout=0.5)
                if msg is None:
                    break  # lost: no need to wait for the rest
                got.append(msg.seq)
            late = await drain(stalled, 2000, timeout=0.2)
            return got, late

    got, late = run(main())
    assert len(late) < 1500  # the stalled subscriber lost what overflowed its queues
    if nodrop:
        assert len(got) < 1500  # everyone lost them
    else:
        assert got == list(range(1500))  # the healthy subscriber lost nothing


def test_sub_topics_filter_streams():
    async def main():
        async with Sender(TCP, "pub") as tx, \
                Receiver(tx.endpoint, "sub", topics=("ev/keep",)) as rx:
            # probes (seq PROBE) until the subscription has arrived; a probe still in flight
            # then arrives later and is skipped below
            await subscribed(tx, rx, packet(PROBE, stream="keep"), timeout=0.05)
            for i in range(10):
                await tx.send(packet(i, stream="other"))
                await tx.send(packet(i, stream="keep"))
            got = []
            while len(got) < 10 and (msg := await rx.recv(timeout=10)) is not None:
                if msg.seq != PROBE:
                    got.append(msg)
            return got

    PROBE = 1000
    got = run(main())
    assert [p.seq for p in got] == list(range(10)) and {p.stream_id for p in got} == {"keep"}


def test_wire_errors_are_counted_and_skipped():
    async def main():
        ctx = zmq.asyncio.Context.instance()
        async with Receiver("inproc://test-bad", "pull", bind=True) as rx:
            raw = ctx.socket(zmq.PUSH)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(rx.endpoint)
            bad = [[b"x"], [b"ev/s0", b"\xc1", b""], [b"ev/s0", b"\x80", b""], [b"a", b"b", b"c", b"d"]]
            for frames in bad:
                await raw.send_multipart(frames)
            async with Sender(rx.endpoint, "push", bind=False) as tx:
                await tx.send(packet(5))
                got = await rx.recv(timeout=5)
            raw.close()
            return got, rx.stats, rx.last_error

    got, stats, last = run(main())
    assert got.seq == 5 and stats["wire_errors"] == 4 and stats["received"] == 1
    assert last is not None and last.field == "frames"


def test_errors_and_options():
    async def main():
        async with Sender(TCP, "push") as a:
            with pytest.raises(TransportError):
                async with Sender(a.endpoint, "push"):
                    pass
        with pytest.raises(TransportError):
            await Sender(TCP, "push").send(packet())
        async with Receiver(TCP, "pull", bind=True) as rx:
            assert await rx.recv(timeout=0.01) is None
            assert await rx.recv_batch(timeout=0) == []

    run(main())
    with pytest.raises(ConfigError):
        Sender("udp://x", "push")
    with pytest.raises(ConfigError):
        Sender(TCP, "pull")
    with pytest.raises(ConfigError):
        Receiver(TCP, "push")
    with pytest.raises(ConfigError):
        Receiver(TCP, "pull", topics=("ev/",))
    with pytest.raises(ConfigError):
        Sender(TCP, "push", hwm=-1)
    with pytest.raises(ConfigError) as err:
        Sender(TCP, "push", linger_ms=-5)
    assert err.value.key == "linger_ms"


class Fake:
    name, modality, layout = "fake", "vision", "dvs"

    def __init__(self, n=8, seed=0):
        rng = np.random.default_rng(seed)
        self.ev = []
        for _ in range(n):
            ev = np.zeros(int(rng.integers(0, 3000)), dtype=DVS_DTYPE)
            ev["t"] = np.sort(rng.integers(0, 50_000, size=len(ev)))
            self.ev.append(ev)

    def __len__(self):
        return len(self.ev)

    def label(self, i):
        return str(i % 10)

    def events(self, i):
        return self.ev[i]

    def duration_us(self, i):
        return 50_000


def test_several_concurrent_streams_one_socket_each_and_merged():
    ds = Fake()
    ids = stream_ids("cam", 4)
    cfg = ReplayConfig(packet_us=2000, order="shuffle")

    async def main():
        async with Receiver(TCP, "pull", bind=True) as rx:
            async def stream(sid, k):
                async with Sender(rx.endpoint, "push", bind=False) as tx:
                    c = dataclasses.replace(cfg, seed=k)
                    async for p in pace(schedule(ds, sid, c), "max"):
                        await tx.send(p)
                    return tx.stats["sent"]

            total = sum(len(list(schedule(ds, s, cfg))) for s in ids)
            tasks = [asyncio.create_task(stream(sid, k)) for k, sid in enumerate(ids[:2])]
            async with Sender(rx.endpoint, "push", bind=False) as tx:  # two streams merged
                merged = merge(schedule(ds, s, dataclasses.replace(cfg, seed=k))
                               for k, s in enumerate(ids[2:], start=2))
                async for p in pace(merged, 8.0):
                    await tx.send(p)
                got = await drain(rx, total)
            await asyncio.gather(*tasks)
            return got, total

    got, total = run(main(), timeout=60)
    assert len(got) == total
    for sid in ids:
        own = [p for p in got if p.stream_id == sid]
        assert [p.seq for p in own] == list(range(len(own)))
        assert sum(len(p.events) for p in own) == sum(len(e) for e in ds.ev)


@pytest.mark.realdata
@pytest.mark.slow
def test_1000_real_nmnist_samples_push_pull_max_speed_lose_nothing(real_data):
    from streamlsm_sources.nmnist import NMNISTDataset

    ds = NMNISTDataset(real_data / "nmnist")
    assert len(ds) == 1000
    file_events = [len(ds.events(i)) for i in range(len(ds))]
    cfg = ReplayConfig(packet_us=10_000, speed="max")

    async def main():
        async with Sender(TCP, "push", hwm=100) as tx, Receiver(tx.endpoint, "pull") as rx:
            counts = np.zeros(len(ds), dtype=np.int64)
            seqs = []

            async def consume(n_expected):
                while len(seqs) < n_expected:
                    for p in await rx.recv_batch(timeout=10):
                        counts[p.sample_id] += len(p.events)
                        seqs.append(p.seq)

            items = list(schedule(ds, "nmnist", cfg))
            task = asyncio.create_task(consume(len(items)))
            async for p in pace(items, cfg.speed):
                await tx.send(p)
            await task
            return counts, seqs, tx.stats, rx.stats

    counts, seqs, txs, rxs = run(main(), timeout=120)
    assert counts.tolist() == file_events
    assert seqs == list(range(len(seqs)))
    assert txs["events"] == rxs["events"] == sum(file_events) and rxs["wire_errors"] == 0


def test_oversized_frames_disconnect_the_peer_and_later_messages_still_arrive():
    from streamlsm.net.wire import WireLimits

    async def main():
        limits = WireLimits(max_events=100)
        async with Receiver(TCP, "pull", bind=True, limits=limits) as rx:
            ctx = zmq.asyncio.Context.instance()
            raw = ctx.socket(zmq.PUSH)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(rx.endpoint)
            await raw.send_multipart([b"ev/s0", b"\x80", b"x" * 1_000_000])
            big = await rx.recv(timeout=0.3)
            raw.close()
            async with Sender(rx.endpoint, "push", bind=False) as tx:
                await tx.send(packet(1, n=100))
                ok = await rx.recv(timeout=5)
            return big, ok

    big, ok = run(main())
    assert big is None and ok.seq == 1 and len(ok.events) == 100


def test_async_iteration_and_setup_hook():
    seen = []

    def setup(sock):
        seen.append(sock.getsockopt(zmq.LINGER))
        sock.setsockopt(zmq.RCVBUF, 1 << 20)

    async def main():
        async with Receiver("inproc://test-iter", "pull", bind=True, setup=setup) as rx, \
                Sender(rx.endpoint, "push", bind=False) as tx:
            for i in range(5):
                await tx.send(packet(i))
            got = []
            async for msg in rx:
                got.append(msg.seq)
                if len(got) == 5:
                    break
            return got

    assert run(main()) == [0, 1, 2, 3, 4] and seen == [0]

    async def break_off():  # leaving the loop mid-batch loses nothing
        async with Receiver("inproc://test-iter2", "pull", bind=True) as rx, \
                Sender(rx.endpoint, "push", bind=False) as tx:
            for i in range(10):
                await tx.send(packet(i))  # inproc: queued at once, so one batch holds all ten
            first = []
            async for msg in rx:
                first.append(msg.seq)
                if len(first) == 3:
                    break
            rest = [(await rx.recv(timeout=10)).seq for _ in range(7)]
            return first, rest

    assert run(break_off()) == ([0, 1, 2], [3, 4, 5, 6, 7, 8, 9])

    def bad_setup(sock):
        raise ConfigError("setup", "refused")

    async def refused():
        async with Sender(TCP, "push", setup=bad_setup):
            pass

    with pytest.raises(ConfigError):
        run(refused())
