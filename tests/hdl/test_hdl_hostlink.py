"""HostLink (hdl/hostlink.py) in the Amaranth simulator: EXPECT reaches the self-test unit, and
BOOT waits while the self-test runs, with random gaps between the host's bytes and random
stalls of the transmitter."""
import numpy as np
import pytest

from bsnn.hdl.config import CoreGeometry
from bsnn.hdl.hostlink import HostLink, Opcode, Reply, expect_frame

from hdl_testutil import run_sim

GEOM = CoreGeometry(sizes=(12, 9, 5), v_width=9, c_width=8, bias_width=5, lanes=4, trace=True,
                    max_input_events=8)


def _feeder(dut, sent, rng):
    """A testbench that offers the bytes ``sent`` to the link's receive stream, with random gaps."""
    async def host(ctx):
        for byte in sent:
            while rng.random() < 0.5:
                await ctx.tick()
            ctx.set(dut.i_rx.valid, 1)
            ctx.set(dut.i_rx.payload, byte)
            await ctx.tick().until(dut.i_rx.ready)
            ctx.set(dut.i_rx.valid, 0)
    return host


@pytest.mark.parametrize("seed", range(3))
def test_expect_is_passed_on_and_boot_waits_for_the_self_test(seed):
    rng = np.random.default_rng(seed)
    dut = HostLink(GEOM, rx_depth=16)
    words = [int(w) for w in rng.integers(0, 1 << 16, 3)]
    sent = b"".join(expect_frame(w) for w in words) + bytes([Opcode.BOOT])
    expects, tx, log = [], [], {}
    pending_cycles = int(rng.integers(20, 60))

    host = _feeder(dut, sent, rng)

    async def device(ctx):
        # The self-test runs (boot_pending) for a while, then reports status 0x21.
        ctx.set(dut.boot_pending, 1)
        ctx.set(dut.boot_status, 0x21)
        cycle = 0
        while len(tx) < 2:
            if cycle == pending_cycles + 8 * len(sent):
                ctx.set(dut.boot_pending, 0)
                log["released"] = cycle
            ready = rng.random() < 0.6
            ctx.set(dut.o_tx.ready, ready)
            ctx.set(dut.o_expect.ready, rng.random() < 0.7)
            _, _, tv, tp, ev, er, ep = await ctx.tick().sample(
                dut.o_tx.valid, dut.o_tx.payload, dut.o_expect.valid, dut.o_expect.ready,
                dut.o_expect.payload)
            if tv and ready:
                tx.append(tp)
                log.setdefault("first_tx", cycle)
            if ev and er:
                expects.append(ep)
            cycle += 1

    run_sim(dut, host, device, deadline_cycles=20_000)
    assert expects == words                           # each EXPECT once, in order
    assert tx == [Reply.BOOT, 0x21]
    assert log["first_tx"] > log["released"]          # not while the self-test ran


def _link_session(dut, sent, rng, n_tx, batch=True, busy_cycles=0, classes=(), done=None):
    """Feed ``sent`` with random gaps, take the link's batch streams with random stalls, offer
    ``classes`` then ``done`` (BatchDoneLayout fields) as the batch unit's replies once the run
    was taken, and collect ``n_tx`` transmitted bytes."""
    seen = {"words": [], "runs": [], "tx": [], "run_cycle": None}

    host = _feeder(dut, sent, rng)

    async def device(ctx):
        cycle, pending, summary = 0, list(classes), done
        ctx.set(dut.busy, 1 if busy_cycles else 0)
        while len(seen["tx"]) < n_tx:
            if cycle == busy_cycles:
                ctx.set(dut.busy, 0)
            ready = rng.random() < 0.6
            ctx.set(dut.o_tx.ready, ready)
            if batch:
                ctx.set(dut.o_batch_word.ready, rng.random() < 0.7)
                ctx.set(dut.o_batch_run.ready, rng.random() < 0.7)
                replying = seen["run_cycle"] is not None
                ctx.set(dut.i_batch_class.valid, replying and bool(pending))
                if pending:
                    ctx.set(dut.i_batch_class.payload, pending[0])
                ctx.set(dut.i_batch_done.valid, replying and not pending and summary is not None)
                if summary is not None:
                    ctx.set(dut.i_batch_done.payload, summary)
                _, _, tv, tp, wv, wr, wp, rv, rr, rp, cv, cr, dv, dr = await ctx.tick().sample(
                    dut.o_tx.valid, dut.o_tx.payload, dut.o_batch_word.valid,
                    dut.o_batch_word.ready, dut.o_batch_word.payload.as_value(),
                    dut.o_batch_run.valid, dut.o_batch_run.ready, dut.o_batch_run.payload.count,
                    dut.i_batch_class.valid, dut.i_batch_class.ready, dut.i_batch_done.valid,
                    dut.i_batch_done.ready)
                if wv and wr:
                    seen["words"].append(int(wp))
                if rv and rr:
                    seen["runs"].append(int(rp))
                    seen["run_cycle"] = cycle
                if cv and cr:
                    pending.pop(0)
                if dv and dr:
                    summary = None
            else:
                _, _, tv, tp = await ctx.tick().sample(dut.o_tx.valid, dut.o_tx.payload)
            if tv and ready:
                seen["tx"].append(int(tp))
            cycle += 1

    run_sim(dut, host, device, deadline_cycles=30_000)
    return seen


@pytest.mark.parametrize("seed", range(3))
def test_batch_commands_and_replies(seed):
    """BATCH_EVENT words reach the batch unit in order, BATCH_RUN waits for the idle core, the
    unit's outcomes and summary go out as BATCH_CLASS and BATCH_DONE frames; INFO's last byte is
    log2 of the batch memory."""
    from bsnn.hdl.hostlink import INFO_FIELDS, batch_frames, batch_run_frame, frame_sizes
    rng = np.random.default_rng(seed)
    dut = HostLink(GEOM, rx_depth=16, batch_words=256)
    images = [[[(int(rng.integers(12)), int(rng.integers(2))) for _ in range(rng.integers(3))]
               for _ in range(2)] for _ in range(2)]
    K = frame_sizes(GEOM)["K"]
    sent = batch_frames(GEOM, images) + batch_run_frame(2) + bytes([Opcode.INFO])
    want_words = [int.from_bytes(sent[i + 1:i + 1 + K], "little")
                  for i in range(0, len(sent) - 4, 1 + K)]
    classes = [{"index": 3, "error": 2}, {"index": 11, "error": 0}]
    done = {"status": 4, "count": 2, "cycles": 0x01020304}
    busy = 8 * len(sent) + 50
    n_tx = 2 * (1 + K) + 8 + 1 + len(INFO_FIELDS)
    out = _link_session(dut, sent, rng, n_tx, busy_cycles=busy, classes=classes, done=done)
    assert out["words"] == want_words and out["runs"] == [2]
    assert out["run_cycle"] >= busy                  # not while the core was busy
    tx = bytes(out["tx"])
    frames = [tx[:1 + K], tx[1 + K:2 + 2 * K], tx[2 + 2 * K:10 + 2 * K]]
    assert frames[0] == bytes([Reply.BATCH_CLASS]) + (3 | 2 << GEOM.idx_w).to_bytes(K, "little")
    assert frames[1] == bytes([Reply.BATCH_CLASS]) + (11).to_bytes(K, "little")
    assert frames[2] == bytes([Reply.BATCH_DONE, 4, 2, 0, 4, 3, 2, 1])
    info = tx[10 + 2 * K:]
    assert info[0] == Reply.INFO and info[-1] == 8         # 256 words


def test_batch_opcodes_unknown_without_batch_hardware():
    """A build without batch hardware: INFO's batch byte is 0 (from the emptied register), the
    batch opcodes are unknown ones (protocol-error bit)."""
    from bsnn.hdl.hostlink import INFO_FIELDS
    rng = np.random.default_rng(9)
    dut = HostLink(GEOM, rx_depth=16)
    assert not hasattr(dut, "o_batch_word")
    sent = bytes([Opcode.INFO, Opcode.BATCH_RUN, Opcode.PING])
    out = _link_session(dut, sent, rng, 1 + len(INFO_FIELDS) + 2, batch=False)
    info, pong = out["tx"][:1 + len(INFO_FIELDS)], out["tx"][1 + len(INFO_FIELDS):]
    assert info[0] == Reply.INFO and info[-1] == 0 and info[1] == 4   # version 4, no batch
    assert pong[0] == Reply.PONG and pong[1] & 0x20                   # unknown opcode seen
