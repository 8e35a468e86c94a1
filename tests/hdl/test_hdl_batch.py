"""BatchUnit (hdl/batch.py) against a model of the core, under random stalls: the words of each
image reach the core between its start and its done and nowhere else, the outcomes and the
cycle count come back, malformed batches are refused or padded, never hung."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.batch import BatchStatus, BatchUnit, batch_log2, batch_words_check
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.layouts import InputEventLayout, ResultKind

from hdl_testutil import run_sim, stream_put

T = 3
DEPTH = 64


def _geom():
    b = random_bundle(np.random.default_rng(1), sizes=[14, 10, 6], v_width=10, c_width=8,
                      bias_width=5, max_input_events=10, time_steps=T)
    return CoreGeometry.from_bundle(b, HardwareConfig(lanes=4, neuron_lanes=2))


GEOM = _geom()
EVENT = InputEventLayout(GEOM.idx_w)


def _word(index, polarity=0, eos=0):
    return EVENT.const({"index": index, "polarity": polarity, "end_of_step": eos}).as_bits()


def _fields(w):
    c = EVENT.from_bits(w)
    return {"index": int(c.index), "polarity": int(c.polarity), "end_of_step": int(c.end_of_step)}


def _image(rng, steps=T):
    """The words of one image: per step 0-3 random events, then the end-of-step marker."""
    out = []
    for _ in range(steps):
        out += [_word(int(rng.integers(14)), int(rng.integers(2))) for _ in range(rng.integers(4))]
        out.append(_word(0, 0, 1))
    return out


def _klass(words):
    """The fake core's class of an image: a function of its events."""
    return sum(EVENT.from_bits(w).index * (i + 1) for i, w in enumerate(words)) % (1 << GEOM.idx_w)


def _run(words, count, seed=0, p_ready=0.6, extra_words=0):
    """Load ``words``, run ``count`` images on a model of the core (events taken with random
    stalls, an inference ends after T markers, then random SPIKE/POTENTIAL records, the CLASS
    and done); returns what the unit reported and what the model saw."""
    rng = np.random.default_rng(seed)
    dut = BatchUnit(GEOM, DEPTH)
    seen = {"images": [], "classes": [], "done": None, "starts": [], "dones": [],
            "taken_outside": 0, "expected": []}

    async def bench(ctx):
        ctx.set(dut.time_steps, T)
        await stream_put(ctx, dut.i_word, [_fields(w) for w in words], rng=rng,
                         p_valid=0.7)
        await stream_put(ctx, dut.i_run, [{"count": count}])
        cycle, busy, markers, cur, results = 0, False, 0, [], []
        done_next = False
        ctx.set(dut.o_class.ready, 0)
        while True:
            ready = bool(rng.random() < p_ready)
            ctx.set(dut.o_events.ready, ready)
            # results of a finished image, then done one cycle after the CLASS
            if results:
                kind, index = results[0]
                ctx.set(dut.i_results.valid, 1)
                ctx.set(dut.i_results.payload, {"kind": kind, "index": index, "step": 0,
                                                "layer": 0, "value": 0})
            else:
                ctx.set(dut.i_results.valid, 0)
            err = int(rng.integers(4))
            ctx.set(dut.done, done_next)
            ctx.set(dut.error, err if done_next else int(rng.integers(4)))
            _, _, start, ev_valid, payload, res_ready, active, o_done_valid = await ctx.tick().sample(
                dut.start, dut.o_events.valid, dut.o_events.payload.as_value(), dut.i_results.ready,
                dut.active, dut.o_done.valid)
            if done_next:
                seen["dones"].append(cycle)
                seen["expected"].append((_klass(cur), err))
                seen["images"].append(cur)
                busy, cur, done_next = False, [], False
            if results and res_ready:
                kind, _ = results.pop(0)
                if kind == ResultKind.CLASS:
                    done_next = True
            if start:
                assert not busy
                seen["starts"].append(cycle)
                busy, markers = True, 0
            if ev_valid and ready:
                w = int(payload)
                if not busy or markers == T:
                    seen["taken_outside"] += 1
                else:
                    cur.append(w)
                    markers += EVENT.from_bits(w).end_of_step
                    if markers == T:
                        k = _klass(cur)
                        results = ([(ResultKind.SPIKE, int(rng.integers(14)))
                                    for _ in range(rng.integers(3))]
                                   + [(ResultKind.POTENTIAL, j) for j in range(2)]
                                   + [(ResultKind.CLASS, k)])
            cycle += 1
            if not active and not busy and (seen["starts"] or o_done_valid):
                break
            assert cycle < 20_000
        # outcomes with random stalls, then the summary
        while True:
            ready = bool(rng.random() < 0.5)
            ctx.set(dut.o_class.ready, ready)
            ctx.set(dut.o_done.ready, ready)
            _, _, cv, cp, dv, dp = await ctx.tick().sample(dut.o_class.valid, dut.o_class.payload,
                                                           dut.o_done.valid, dut.o_done.payload)
            assert not ctx.get(dut.o_events.valid)
            if cv and ready:
                seen["classes"].append((int(cp.index), int(cp.error)))
            if dv and ready:
                seen["done"] = {"status": int(dp.status), "count": int(dp.count),
                                "cycles": int(dp.cycles)}
                break
        ctx.set(dut.o_done.ready, 0)
        # the memory is empty again: ready for the next batch
        await ctx.tick()
        seen["ready_after"] = bool(ctx.get(dut.i_word.ready)) and bool(ctx.get(dut.i_run.ready))

    run_sim(dut, bench, deadline_cycles=100_000)
    return seen


def _images(seed, n):
    rng = np.random.default_rng(seed)
    return [_image(rng) for _ in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_batch_runs_images_back_to_back(seed):
    imgs = _images(100 + seed, 4)
    words = [w for img in imgs for w in img]
    assert len(words) <= DEPTH
    out = _run(words, len(imgs), seed=seed)
    assert out["taken_outside"] == 0
    assert out["images"] == imgs                     # every word, in its own image
    assert out["classes"] == out["expected"]
    assert [k for k, _ in out["classes"]] == [_klass(i) for i in imgs]
    d = out["done"]
    assert d["status"] == 0 and d["count"] == len(imgs)
    # from the first start pulse to the last done, both counted
    assert d["cycles"] == out["dones"][-1] - out["starts"][0] + 1
    # the next image starts the cycle after the previous one's done
    assert [s - e for s, e in zip(out["starts"][1:], out["dones"][:-1])] == [1] * (len(imgs) - 1)
    assert out["ready_after"]


def test_batch_full_memory_and_no_stalls():
    """Exactly DEPTH words, the core always ready: one event per cycle."""
    rng = np.random.default_rng(5)
    imgs, n = [], 0
    while True:
        img = _image(rng)
        if n + len(img) > DEPTH:
            break
        imgs.append(img)
        n += len(img)
    imgs[-1] = imgs[-1][:-1] + [_word(1)] * (DEPTH - n) + imgs[-1][-1:]
    words = [w for img in imgs for w in img]
    assert len(words) == DEPTH
    out = _run(words, len(imgs), seed=5, p_ready=1.0)
    assert out["images"] == imgs and out["done"]["status"] == 0


def test_batch_overflow_refused():
    imgs = _images(7, 24)
    words = [w for img in imgs for w in img]
    assert len(words) > DEPTH
    out = _run(words, 2, seed=1)
    assert out["done"] == {"status": BatchStatus.OVERFLOW, "count": 0, "cycles": 0}
    assert out["classes"] == [] and out["starts"] == [] and out["ready_after"]


@pytest.mark.parametrize("count", [0, DEPTH + 1])
def test_batch_bad_count_refused(count):
    words = _images(8, 1)[0]
    out = _run(words, count, seed=2)
    assert out["done"] == {"status": BatchStatus.BAD_COUNT, "count": 0, "cycles": 0}
    assert out["starts"] == [] and out["classes"] == []


def test_batch_short_padded_long_flagged():
    imgs = _images(9, 3)
    # the last image lacks its final marker: padded (SHORT), never hung
    words = [w for img in imgs for w in img][:-1]
    out = _run(words, 3, seed=3)
    assert out["taken_outside"] == 0
    assert out["images"] == imgs
    assert out["done"]["status"] == BatchStatus.SHORT and out["done"]["count"] == 3
    # fewer images run than loaded: the rest stays out of the core (LONG)
    words = [w for img in imgs for w in img]
    out = _run(words, 2, seed=4)
    assert out["taken_outside"] == 0 and out["images"] == imgs[:2]
    assert out["done"]["status"] == BatchStatus.LONG and len(out["classes"]) == 2


def test_batch_words_check():
    assert batch_words_check(0) == 0 and batch_log2(0) == 0
    assert batch_log2(16384) == 14
    for bad in (8, 100, 1 << 16, -1):
        with pytest.raises(ValueError):
            batch_words_check(bad)
