"""Sequencer: steps and layers in order, the right event source for each layer, the unit
controls of every state, the done pulse and the cycle count, against a reactive model of the
units with random delays and stalls."""
import numpy as np
import pytest

from bsnn.firmware_export.bundle import random_bundle
from bsnn.hdl.config import CoreGeometry, HardwareConfig
from bsnn.hdl.result_emitter import EmitMode
from bsnn.hdl.sequencer import Sequencer

from hdl_testutil import run_sim


def batches(rng, n):
    """``n`` event batches, each a few events and its closing flush."""
    return [[{"index": int(rng.integers(0, 8)), "polarity": int(rng.integers(0, 2)), "flush": 0}
             for _ in range(int(rng.integers(0, 4)))] + [{"index": 0, "polarity": 0, "flush": 1}]
            for _ in range(n)]


@pytest.mark.parametrize("sizes,T,p", [([4, 3], 1, 1.0), ([4, 3], 3, 0.5), ([5, 6, 4, 3], 1, 0.7),
                                       ([5, 6, 4, 3], 3, 0.5), ([5, 6, 3], 2, 1.0)])
def test_sequencer_walks_steps_and_layers(sizes, T, p):
    rng = np.random.default_rng(len(sizes) * 10 + T + int(10 * p))
    bundle = random_bundle(rng, sizes=sizes, time_steps=T)
    g = CoreGeometry.from_bundle(bundle, HardwareConfig(lanes=2))
    L = g.n_layers
    dut = Sequencer(g)
    inferences = 2
    inputs = [batches(rng, T) for _ in range(inferences)]
    spikes = [batches(rng, T * (L - 1)) for _ in range(inferences)]
    log = []

    async def bench(ctx):
        ctx.set(dut.time_steps, T)
        for run in range(inferences):
            await ctx.tick().repeat(int(rng.integers(1, 4)))
            ctx.set(dut.start, 1)
            *_, accepted = await ctx.tick().sample(dut.accepted)
            ctx.set(dut.start, 0)
            assert accepted
            pending = {"input": [e for b in inputs[run] for e in b],
                       "spikes": [e for b in spikes[run] for e in b]}
            seen = {"input": [], "spikes": []}
            busy_cycles, clear_left, wait = 0, None, 0
            updates, emit_modes = [], []
            while True:
                clear = ctx.get(dut.clear)
                if clear:                       # the synapse clears for a few cycles
                    assert clear_left is None
                    clear_left = int(rng.integers(0, 5))
                ctx.set(dut.units_busy, bool(clear_left))
                if clear_left:
                    clear_left -= 1
                mode = ctx.get(dut.emit_mode)
                # The units answer each phase after a random delay.
                done_port = {EmitMode.SPIKES: dut.layer_done, EmitMode.POTENTIALS: dut.dump_done,
                             EmitMode.CLASS: dut.class_done}.get(mode)
                for port in (dut.layer_done, dut.dump_done, dut.class_done):
                    ctx.set(port, 0)
                if done_port is not None:
                    if wait == 0:
                        wait = int(rng.integers(1, 5))
                    wait -= 1
                    ctx.set(done_port, wait == 0)
                streams = {"input": dut.i_input}
                if L > 1:
                    streams["spikes"] = dut.i_spikes
                for name, port in streams.items():
                    offer = bool(pending[name]) and rng.random() < p
                    ctx.set(port.valid, offer)
                    if pending[name]:
                        ctx.set(port.payload, pending[name][0])
                ctx.set(dut.o_events.ready, rng.random() < p)
                sample = [dut.idle, dut.input_enable, dut.replay_enable, dut.step, dut.layer,
                          dut.hidden, dut.layer_end, dut.dump_start, dut.dumping, dut.done,
                          dut.cycles, dut.o_events.valid, dut.o_events.ready, dut.o_events.payload]
                for port in streams.values():
                    sample += [port.valid, port.ready]
                _, _, idle, in_en, rep_en, step, layer, hidden, layer_end, dump_start, dumping, \
                    done, cycles, ev_valid, ev_ready, ev, *ports = await ctx.tick().sample(*sample)
                if done:
                    assert idle and cycles == busy_cycles
                    break
                assert not idle
                busy_cycles += 1
                emit_modes.append(mode)
                assert hidden == (layer < L - 1)
                # Layer 0 takes the input filter's events, later layers the replayed spikes.
                assert not (in_en and rep_en)
                assert (in_en, rep_en) in ((0, 0), (layer == 0, layer != 0))
                for k, name in enumerate(streams):
                    valid, ready = ports[2 * k:2 * k + 2]
                    enabled = in_en if name == "input" else rep_en
                    if enabled:
                        assert ev_valid == valid and ready == ev_ready
                    else:
                        assert not ready
                    if valid and ready:
                        seen[name].append(pending[name].pop(0))
                if not (in_en or rep_en):
                    assert not ev_valid
                if mode == EmitMode.SPIKES and (not updates or updates[-1] != (step, layer)):
                    updates.append((step, layer))
                if layer_end:
                    log.append(("next", step, layer, dump_start))
                if dumping:
                    assert mode == EmitMode.POTENTIALS
            assert updates == [(t, l) for t in range(T) for l in range(L)]
            assert seen["input"] == [e for b in inputs[run] for e in b]
            assert seen["spikes"] == [e for b in spikes[run] for e in b]
            # The phases in order: every layer update, then the dump, then the class.
            phases = [m for k, m in enumerate(emit_modes) if k == 0 or emit_modes[k - 1] != m]
            assert [m for m in phases if m != EmitMode.NONE] == \
                [EmitMode.SPIKES] * (T * L) + [EmitMode.POTENTIALS, EmitMode.CLASS]
            log.append(("done", run))

    run_sim(dut, bench, deadline_cycles=20_000)
    for run in range(inferences):
        nexts = log[run * (T * L + 1):(run + 1) * (T * L + 1) - 1]
        # NEXT after every layer update; the dump starts after the last step's last layer only.
        assert [(s, l) for _, s, l, _ in nexts] == [(t, l) for t in range(T) for l in range(L)]
        assert [d for *_, d in nexts] == [0] * (T * L - 1) + [1]
