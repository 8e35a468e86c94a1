"""The written hardware manifest (``hardware.json``) states what the elaborated core really has:
port payloads as the ports' layouts pack them, memory words and depths as the built memories,
the spike queue as deep as its FIFO, for several geometries (lanes, neuron lanes, state options,
trace). Each fact is compared with the hardware, not with the code that wrote the manifest, so
changing it in one place only fails here."""
import json

import numpy as np
import pytest
from amaranth.hdl import Fragment, Shape
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory

from bsnn.firmware_export.bundle import (MAX_NEURONS, MAX_TIME_STEPS, MAX_WIDTH, READOUTS, RESETS,
                                         LayerSpec, random_bundle)
from bsnn.hdl.board import BOARDS, memory_plan
from bsnn.hdl.config import COUNT_WIDTH, STEP_WIDTH, CoreGeometry, HardwareConfig
from bsnn.hdl.core import BSNNCore
from bsnn.hdl.generate import MANIFEST_NAME, generate
from bsnn.hdl.images import layer_mode_word
from bsnn.hdl.layouts import LayerModeLayout, ReadoutRule, ResetMode
from bsnn.hdl.neuron import NeuronUnit
from bsnn.hdl.register_memory import RegisterMemory
from bsnn.hdl.synapse import SynapseUnit
from bsnn.hdl.weights import WeightMemory
from bsnn.sim.harness import IN_INDEX_BITS


def _layers(sizes, current=(), fire_once=()):
    return [LayerSpec(size=n, current=l in current, fire_once=l in fire_once, leak_v=l % 3,
                      reset=("subtract", "zero", "none")[l % 3]) for l, n in enumerate(sizes[1:])]


# (sizes, hardware config, layers with a synaptic current, layers that fire once)
GEOMETRIES = {
    "P4-U1-full-trace": ([6, 9, 5, 3], HardwareConfig(lanes=4), (0,), (1,)),
    "P8-U4-minimal-notrace": ([12, 17, 10, 4], HardwareConfig(lanes=8, neuron_lanes=4,
                                                              neuron_state="minimal", trace=False), (), ()),
    "P8-U2-minimal-current-long": ([7, 11, 6], HardwareConfig(lanes=8, neuron_lanes=2,
                                                              neuron_state="minimal",
                                                              neuron_pipeline="long"), (1,), ()),
    "P4-U4-minimal-fire_once-banked": ([9, 13, 5, 6], HardwareConfig(
        lanes=4, neuron_lanes=4, neuron_state="minimal", weight_bank_words=8), (), (0,)),
    "P1-U1-one-layer-notrace": ([3, 1], HardwareConfig(lanes=1, trace=False), (), ()),
}


def _fields(layout):
    return {name: [f.offset, f.width] for name, f in layout}


def _payload(core, port):
    return core.signature.members[port].signature.members["payload"].shape


def _elaborated(core):
    """``[(origin elaboratable, {name: child origin})]`` of every fragment of the whole core."""
    found = []

    def walk(fragment):
        children = {}
        for sub, name, _ in fragment.subfragments:
            children[name] = sub.origins[0] if sub.origins else None
            walk(sub)
        found.append((fragment.origins[0] if fragment.origins else None, children))
    walk(Fragment.get(core, None))
    return found


def _of_type(found, cls):
    return [(origin, children) for origin, children in found if isinstance(origin, cls)]


def _hex_file(path):
    lines = path.read_text().split()
    return len(lines), {len(x) for x in lines}


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_written_manifest_matches_the_elaborated_core(tmp_path, name):
    sizes, hw, current, fire_once = GEOMETRIES[name]
    bundle = random_bundle(np.random.default_rng(len(name)), sizes=sizes,
                           layers=_layers(sizes, current, fire_once))
    generate(bundle, hw, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    core = BSNNCore(bundle, hw)
    g = core.geom
    found = _elaborated(core)
    U = hw.neuron_lanes
    assert manifest["build_key"] == g.key() and manifest["neuron_lanes"] == U

    # ---- ports: the layouts the core's ports carry ----
    ports = manifest["ports"]
    for port in ("i_events", "o_results", "i_config"):
        layout = _payload(core, port)
        assert ports[port]["payload_width"] == layout.size, port
        assert ports[port]["fields"] == _fields(layout), port
    value = _payload(core, "o_results")["value"]
    assert ports["o_results"]["value_signed"] == Shape.cast(value.shape).signed
    assert ports["cycles_width"] == Shape.cast(core.signature.members["cycles"].shape).width
    error_width = Shape.cast(core.signature.members["error"].shape).width
    assert sorted(ports["error_bits"].values()) == list(range(error_width))

    # LAYER_MODE: the neuron unit decodes its mode registers with these bits, and the words of
    # layer_mode.hex / the config writes carry each field where the manifest says.
    assert ports["i_config"]["layer_mode_bits"] == _fields(LayerModeLayout())
    mode_bits = ports["i_config"]["layer_mode_bits"]
    words = [int(x, 16) for x in (tmp_path / "layer_mode.hex").read_text().split()]
    for layer, word in zip(bundle.layers, words):
        assert word == layer_mode_word(layer)
        got = {f: (word >> lsb) & ((1 << w) - 1) for f, (lsb, w) in mode_bits.items()}
        assert got == {"current": int(layer.current), "fire_once": int(layer.fire_once),
                       "reset": ResetMode.NAMES[layer.reset], "leak_v": layer.leak_v,
                       "leak_c": layer.leak_c}
    assert manifest["memories"]["layer_mode"]["width"] <= ports["i_config"]["fields"]["data"][1]

    mems = manifest["memories"]
    # ---- memory images: one word per line, as many lines as the depth, whole hex digits ----
    for image in ("weights", "bias", "threshold", "layer_mode", "global"):
        depth, digits = _hex_file(tmp_path / mems[image]["file"])
        assert depth == mems[image]["depth"], image
        assert digits == {-(-mems[image]["width"] // 4)}, image

    # ---- weight memory: P-bit words, as deep as the image ----
    (wmem, wchildren), = _of_type(found, WeightMemory)
    banks = [m for m in wchildren.values() if isinstance(m, Memory)]
    assert {Shape.cast(m.shape).width for m in banks} == {mems["weights"]["width"]} == {g.lanes}
    assert sum(m.depth for m in banks) >= mems["weights"]["depth"]

    # ---- accumulators ----
    (_, schildren), = _of_type(found, SynapseUnit)
    acc = schildren["acc"]
    assert Shape.cast(acc.shape).width == mems["accumulators"]["width"]
    if mems["accumulators"]["depth"] == 1:      # one word: flip-flops (hdl/register_memory.py)
        assert isinstance(acc, RegisterMemory) and acc.depth == 1
    else:
        assert isinstance(acc, Memory) and acc.depth == max(2, mems["accumulators"]["depth"])

    # ---- neuron banks: state (only what the build stores), output statistics, parameters ----
    neuron_units = _of_type(found, NeuronUnit)
    assert len(neuron_units) == mems["neuron_state"]["banks"] == mems["output_stats"]["banks"] == U
    for _, children in neuron_units:
        state, stat = children["state"], children["stat"]
        assert Shape.cast(state.shape).width == mems["neuron_state"]["width"]
        assert _fields(state.shape) == mems["neuron_state"]["fields"]
        assert state.depth == max(2, mems["neuron_state"]["depth"])
        assert Shape.cast(stat.shape).width == mems["output_stats"]["width"]
        if mems["output_stats"]["depth"] == 1:     # one word: flip-flops
            assert isinstance(stat, RegisterMemory) and stat.depth == 1
        else:
            assert isinstance(stat, Memory) and stat.depth == max(2, mems["output_stats"]["depth"])
        for param in ("bias", "threshold"):     # stored in whole hex digits
            assert Shape.cast(children[param].shape).width == -(-mems[param]["width"] // 4) * 4
    # Second reading of the stored state (hdl/config.py, HardwareConfig.neuron_state).
    full = hw.neuron_state == "full"
    stores_c = full or bool(current)
    stores_fired = full or bool(fire_once)
    assert mems["neuron_state"]["width"] == bundle.v_width + bundle.c_width * stores_c + stores_fired
    assert mems["neuron_state"]["depth"] == sum(-(-n // U) for n in sizes[1:])

    # ---- spike queue: the FIFO the core builds, one (group, mask) entry per group ----
    queues = [origin for origin, _ in _of_type(found, SyncFIFOBuffered)]
    hidden = sizes[1:-1]
    if hidden:
        queue, = queues
        assert mems["spike_queue"]["depth"] == queue.depth
        assert mems["spike_queue"]["width"] == queue.width
        assert mems["spike_queue"]["fields"]["mask"][1] == U
        # Second reading: the most groups of a hidden layer + 1, at least 3 (architecture.md).
        assert queue.depth == max(3, max(-(-n // U) for n in hidden) + 1)
    else:
        assert queues == [] and mems["spike_queue"]["depth"] == 0

    # ---- the board's memory estimate plans the same memories ----
    plan = memory_plan(CoreGeometry.from_key(manifest["build_key"]), hw, BOARDS["ulx3s-85f"])
    assert ("spike_queue" in plan["bram_by_memory"]) == bool(hidden)



def test_bundle_limits_fit_the_hardware_fields():
    """The bundle's validation (bsnn.firmware_export, which cannot import the hardware) refuses
    whatever the core's fixed-width fields could not hold, and names the same modes."""
    assert MAX_TIME_STEPS == (1 << STEP_WIDTH) - 1
    assert MAX_TIME_STEPS <= (1 << COUNT_WIDTH) - 1      # at most one spike per step
    mode = LayerModeLayout()
    for leak in ("leak_v", "leak_c"):                     # a leak shift is at most width - 1
        assert MAX_WIDTH - 1 <= (1 << mode[leak].width) - 1
    assert set(RESETS) == set(ResetMode.NAMES)
    assert max(ResetMode.NAMES.values()) < 1 << mode["reset"].width
    assert set(READOUTS) == set(ReadoutRule.NAMES)
    widest = CoreGeometry(sizes=(MAX_NEURONS, MAX_NEURONS), v_width=MAX_WIDTH, c_width=MAX_WIDTH,
                          bias_width=MAX_WIDTH, lanes=1, trace=True, max_input_events=1)
    assert widest.idx_w <= IN_INDEX_BITS                  # the Verilator harness's input records
