"""SelfTest (hdl/selftest.py): the verdict on an inference's records, under random stalls."""
import numpy as np
import pytest

from bsnn.hdl.layouts import ResultKind
from bsnn.hdl.selftest import SIGNATURE_BITS, SelfTest, SelfTestStatus, expect_word, signature

from hdl_testutil import run_sim

IDX_W, V_WIDTH = 6, 20      # potentials wider than the signature: it is kept modulo 2**16


def _records(rng, n_out=10):
    """An inference's records as the core emits them: spikes (trace on), POTENTIAL per output
    neuron, then CLASS."""
    recs = [(ResultKind.SPIKE, int(rng.integers(4)), 1, int(rng.integers(1 << IDX_W)), 0)
            for _ in range(int(rng.integers(0, 12)))]
    recs += [(ResultKind.POTENTIAL, 0, 2, j, int(rng.integers(-(1 << 19), 1 << 19)))
             for j in range(n_out)]
    return recs + [(ResultKind.CLASS, 0, 0, int(rng.integers(n_out)), 0)]


def _run(records, expect, error=0, p_taken=0.5, seed=0, done_with_last=False):
    """EXPECT ``expect``, then ``records`` offered with random stalls (random payloads in the
    cycles where nothing is taken), then ``done``; returns the status after each phase."""
    rng = np.random.default_rng(seed)
    dut = SelfTest(IDX_W, V_WIDTH)
    seen = {}

    def put(ctx, rec):
        kind, step, layer, index, value = rec
        ctx.set(dut.result, {"kind": kind, "step": step, "layer": layer, "index": index,
                             "value": value})

    async def bench(ctx):
        seen["before"] = ctx.get(dut.status)
        ctx.set(dut.i_expect.valid, 1)
        ctx.set(dut.i_expect.payload, expect)
        await ctx.tick()
        ctx.set(dut.i_expect.valid, 0)
        seen["armed"] = ctx.get(dut.status)
        for i, rec in enumerate(records):
            while rng.random() > p_taken:          # not taken: whatever is on the bus
                noise = _records(rng, 3)
                put(ctx, noise[int(rng.integers(len(noise)))])
                ctx.set(dut.result_taken, 0)
                await ctx.tick()
            put(ctx, rec)
            ctx.set(dut.result_taken, 1)
            last = i == len(records) - 1
            seen["running"] = ctx.get(dut.status)
            if last and done_with_last:
                ctx.set(dut.done, 1)
                ctx.set(dut.error, error)
            await ctx.tick()
            ctx.set(dut.result_taken, 0)
        if not done_with_last:
            for _ in range(int(rng.integers(0, 4))):
                await ctx.tick()
            ctx.set(dut.done, 1)
            ctx.set(dut.error, error)
            await ctx.tick()
        ctx.set(dut.done, 0)
        ctx.set(dut.error, 0)
        await ctx.tick()
        seen["deciding"] = ctx.get(dut.status)
        await ctx.tick()
        seen["after"] = ctx.get(dut.status)        # 3 cycles after done, as documented
        ctx.set(dut.done, 1)                       # a later inference without EXPECT
        await ctx.tick()
        ctx.set(dut.done, 0)
        for _ in range(3):
            await ctx.tick()
        seen["later"] = ctx.get(dut.status)

    run_sim(dut, bench, deadline_cycles=5_000)
    return seen


@pytest.mark.parametrize("seed", range(6))
def test_matching_records_pass_and_any_change_fails(seed):
    rng = np.random.default_rng(100 + seed)
    records = _records(rng)
    sig = signature(records)
    p_taken = [1.0, 0.5, 0.2][seed % 3]
    seen = _run(records, expect_word(sig), p_taken=p_taken, seed=seed, done_with_last=seed % 2)
    assert seen["before"] == SelfTestStatus.NONE
    assert seen["armed"] == seen["running"] == seen["deciding"] == SelfTestStatus.RUNNING
    assert seen["after"] == seen["later"] == SelfTestStatus.PASSED   # kept until the next EXPECT

    # One potential off by one, the class changed, or an error flag: FAILED.
    bad = list(records)
    j = next(i for i, r in enumerate(bad) if r[0] == ResultKind.POTENTIAL) + int(rng.integers(10))
    bad[j] = bad[j][:4] + (bad[j][4] + 1,)
    assert _run(bad, expect_word(sig), seed=seed)["after"] == SelfTestStatus.FAILED
    other_class = records[:-1] + [records[-1][:3] + ((records[-1][3] + 1) % 10, 0)]
    assert _run(other_class, expect_word(sig), seed=seed)["after"] == SelfTestStatus.FAILED
    assert _run(records, expect_word(sig), error=2, seed=seed)["after"] == SelfTestStatus.FAILED


def test_spike_records_do_not_count():
    rng = np.random.default_rng(7)
    records = _records(rng)
    spikes = [(ResultKind.SPIKE, 1, 1, 5, 0)] * 7
    assert signature(spikes + records) == signature(records)
    assert _run(spikes + records, expect_word(signature(records)))["after"] == SelfTestStatus.PASSED


def test_signature_is_the_sum_modulo_the_width():
    recs = [(ResultKind.POTENTIAL, 0, 1, 0, -3), (ResultKind.POTENTIAL, 0, 1, 1, 1 << 17),
            (ResultKind.CLASS, 0, 0, 4, 0)]
    assert signature(recs) == (-3 + (1 << 17) + 4) % (1 << SIGNATURE_BITS)
    assert (signature(recs) + expect_word(signature(recs))) % (1 << SIGNATURE_BITS) == 0
