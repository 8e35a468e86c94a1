"""Build configuration of the BSNN core: the hardware options and the geometry derived from a bundle."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from amaranth.utils import bits_for, ceil_log2

from bsnn.firmware_export.bundle import MAX_INPUT_EVENTS, MAX_WIDTH, MIN_WIDTH
from bsnn.firmware_export.errors import BuildError, ConfigError
from bsnn.firmware_export.spatial import window_fan_in
from bsnn.firmware_export.validate import (check_table, choice, flag, integer, number, optional,
                                           read_toml, text)

__all__ = ["HardwareConfig", "CoreGeometry", "BuildMismatch", "build_key", "check_fits",
           "COUNT_WIDTH", "MAX_LANES", "span", "spatial_of", "STEP_WIDTH", "LAYER_WIDTH", "MAX_LAYERS", "CYCLES_WIDTH"]

#: Width of the per-output-neuron spike counter and first-spike step (T <= 65535).
COUNT_WIDTH = 16
#: Width of the ``step`` field of result records and of the time-step registers.
STEP_WIDTH = 16
#: Width of the ``layer`` field of result records; layers are numbered 1 .. L <= 15.
LAYER_WIDTH = 4
MAX_LAYERS = (1 << LAYER_WIDTH) - 1
#: Width of the core's ``cycles`` output (cycles of one inference).
CYCLES_WIDTH = 32
#: Where the neuron state and the spike queue can live (HardwareConfig.neuron_state_memory,
#: spike_queue_memory; hdl/single_port.py for the single-port kinds).
MEMORY_CHOICES = ("bram", "single_port", "spram")
#: Most synapse lanes ``P`` of a build (a weight word of 512 bits spans 15 ECP5 block RAMs).
MAX_LANES = 512


def span(n: int) -> range:
    """``range(n)`` for counters and memory depths, at least 2 so that no signal or address in
    the generated Verilog is zero bits wide (degenerate sizes such as one neuron or one chunk)."""
    return range(max(2, n))


class BuildMismatch(BuildError, ValueError):
    """A bundle does not fit a given build (the message lists every mismatching field)."""


@dataclass(frozen=True)
class HardwareConfig:
    """Options of one hardware build that do not come from the model bundle.

    Parameters
    ----------
    lanes : int
        ``P``, the number of synapse lanes: neurons whose accumulators one weight word updates
        per cycle (also the weight-memory word width), 1 to ``MAX_LANES``.
    trace : bool
        Whether the build can emit SPIKE records at all (``False`` removes that path; the
        run-time GLOBAL trace-enable bit then has no effect).
    max_input_events : int or None
        Capacity for input events per step: it sizes the accumulators, and a bundle is loadable
        only if its ``max_input_events`` is at most this. ``None`` takes the bundle's value.
    neuron_lanes : int
        ``U``, neurons updated per cycle (neuron banks). A power of two that divides ``lanes``
        (the synapse unit drains ``U`` of the ``P`` lanes of an accumulator word per cycle).
    neuron_pipeline : str
        ``"short"`` (3 stages: read, arithmetic, saturate/compare/reset, result) or ``"long"``
        (10 stages: the command and its address registered, the read data registered again,
        the leak shifts, every adder and saturation in a stage of its own, comparison and
        subtraction before the write-back, for slow fabrics such as the iCE40). Each stage costs one cycle per layer and step.
    weight_memory : str
        ``"bram"`` (inferred block RAM, initial contents from the bundle) or ``"spram"``
        (iCE40UP5K ``SB_SPRAM256KA`` primitives, ``lanes <= 16``, up to 65,536 words, no initial
        contents: the weights are loaded at run time through ``i_config``).
    neuron_state : str
        ``"full"``: every neuron stores ``{v, c, fired}``, so any bundle of the same sizes and
        widths can be loaded. ``"minimal"``: the synaptic current ``c`` is stored only if a
        layer of the bundle has ``current = true``, and the ``fired`` flag only if a layer has
        ``fire_once = true`` (an output neuron's ``fired`` is then ``count != 0``); a bundle
        that needs more is refused at load time (block RAM for small devices).
    weight_bank_words : int
        ``0``: the weights are one memory. Otherwise they are split into banks of this many
        consecutive words, each with a registered output (``bsnn.hdl.weights.WeightMemory``): large
        networks on the ECP5, whose weight memory spans dozens of block RAMs.
    result_queue : bool
        ``False``: the neuron banks' pipeline stalls while the result emitter is not ready (one
        enable for every pipeline register). ``True``: the pipeline never stalls; its results
        enter a queue of :attr:`CoreGeometry.result_queue_depth` groups (LUT RAM on the ECP5,
        flip-flops on the iCE40), and a group is issued to the banks only while the queue has
        room for every group in flight (timing of wide neuron arrays: no enable fanned out from
        the emitter's handshake to thousands of flip-flops). The same cycles either way.
    neuron_state_memory : str
        ``"bram"``: each neuron bank's state ``{v, c, fired}`` in a RAM that reads one neuron
        and writes back another in the same cycle. ``"spram"``: in iCE40UP5K SB_SPRAM256KA
        (:class:`~bsnn.hdl.single_port.SinglePortRAM`, one access per cycle), so a bank takes a
        neuron every second cycle: the update of a layer costs ``2 G - 1`` cycles for ``G``
        groups instead of ``G``. ``"single_port"``: a RAM used like the SPRAM (its cycles on any
        device, for simulation and measurement). Single-port state needs ``neuron_lanes = 1``.
    spike_queue_memory : str
        ``"bram"`` (``SyncFIFOBuffered``), ``"spram"`` (an SB_SPRAM256KA queue,
        :class:`~bsnn.hdl.single_port.SinglePortFIFO`) or ``"single_port"`` (the same queue on
        an inferred RAM); the same cycles each way.
    accumulator_split : bool
        ``True``: the accumulator lanes are stored in two RAMs, the low bits in every word and
        the high bits only in the words of the layers whose fan-in needs them
        (:attr:`CoreGeometry.accumulator_split`): fewer block RAMs where the layers with the
        most accumulator words have small fan-ins. The same cycles.
    """
    lanes: int = 8
    trace: bool = True
    max_input_events: int | None = None
    neuron_lanes: int = 1
    weight_memory: str = "bram"
    neuron_pipeline: str = "short"
    neuron_state: str = "full"
    weight_bank_words: int = 0
    result_queue: bool = False
    neuron_state_memory: str = "bram"
    spike_queue_memory: str = "bram"
    accumulator_split: bool = False

    def __post_init__(self):
        if isinstance(self.lanes, bool) or not isinstance(self.lanes, int) or not 1 <= self.lanes <= MAX_LANES:
            raise ValueError(f"hardware config: lanes: must be an integer in [1, {MAX_LANES}], "
                             f"got {self.lanes!r}")
        U = self.neuron_lanes
        if (isinstance(U, bool) or not isinstance(U, int) or U < 1 or U & (U - 1)
                or self.lanes % U):
            raise ValueError("hardware config: neuron_lanes: must be a power of two that divides "
                             f"lanes ({self.lanes}), got {U!r}")
        if self.neuron_pipeline not in ("short", "long"):
            raise ValueError("hardware config: neuron_pipeline: must be \"short\" or \"long\", "
                             f"got {self.neuron_pipeline!r}")
        wb = self.weight_bank_words
        if isinstance(wb, bool) or not isinstance(wb, int) or wb < 0 or (wb and (wb & (wb - 1) or wb < 2)):
            raise ValueError("hardware config: weight_bank_words: must be 0 (one bank) or a power "
                             f"of two >= 2, got {wb!r}")
        if self.neuron_state not in ("full", "minimal"):
            raise ValueError("hardware config: neuron_state: must be \"full\" or \"minimal\", "
                             f"got {self.neuron_state!r}")
        if self.weight_memory not in ("bram", "spram"):
            raise ValueError("hardware config: weight_memory: must be \"bram\" or \"spram\", "
                             f"got {self.weight_memory!r}")
        if self.weight_memory == "spram" and self.lanes > 16:
            raise ValueError(f"hardware config: weight_memory \"spram\" needs lanes <= 16 (SPRAM "
                             f"words are 16 bits), got {self.lanes}")
        if not isinstance(self.trace, bool):
            raise ValueError(f"hardware config: trace: must be true or false, got {self.trace!r}")
        if not isinstance(self.result_queue, bool):
            raise ValueError("hardware config: result_queue: must be true or false, "
                             f"got {self.result_queue!r}")
        for name in ("neuron_state_memory", "spike_queue_memory"):
            if getattr(self, name) not in MEMORY_CHOICES:
                raise ValueError(f"hardware config: {name}: must be one of "
                                 f"{', '.join(MEMORY_CHOICES)}, got {getattr(self, name)!r}")
        if self.neuron_state_memory != "bram" and self.neuron_lanes != 1:
            raise ValueError("hardware config: neuron_state_memory "
                             f"{self.neuron_state_memory!r} needs neuron_lanes = 1, got "
                             f"{self.neuron_lanes}")
        if not isinstance(self.accumulator_split, bool):
            raise ValueError("hardware config: accumulator_split: must be true or false, "
                             f"got {self.accumulator_split!r}")
        if self.max_input_events is not None and (
                isinstance(self.max_input_events, bool) or not isinstance(self.max_input_events, int)
                or not 1 <= self.max_input_events <= MAX_INPUT_EVENTS):
            raise ValueError("hardware config: max_input_events: must be null or an integer in "
                             f"[1, {MAX_INPUT_EVENTS}], got {self.max_input_events!r}")

    def for_bundle(self, bundle) -> "HardwareConfig":
        """This config as a build of ``bundle`` uses it: a convolutional bundle updates one
        neuron per cycle (:class:`CoreGeometry`), so a board's ``neuron_lanes`` (chosen for dense
        networks) becomes 1 there; otherwise unchanged."""
        return self if bundle.is_dense else self.replace(neuron_lanes=1)

    def simulated(self) -> "HardwareConfig":
        """The same core with every SPRAM an inferred RAM used the same way (weights in block
        RAM, single-port state and queue ``"single_port"``): the same cycles, and Verilog that a
        simulator runs without the iCE40 primitives."""
        return self.replace(weight_memory="bram", **{
            name: "single_port" for name in ("neuron_state_memory", "spike_queue_memory")
            if getattr(self, name) == "spram"})

    def replace(self, **changes) -> "HardwareConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HardwareConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"hardware config: unknown keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, path) -> "HardwareConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_toml(cls, path) -> "HardwareConfig":
        """The ``[hardware]`` table of a hardware TOML (``hdl/boards/*.toml``; a file of bare
        hardware keys is read as that table). The file is checked against the schema (the
        fields of this class, ``[board]`` as bsnn.hdl.bitstream reads it): an unknown key, a
        wrong type or a value out of range is a one-line ``ConfigError`` naming the file and
        the key (``hw.toml: hardware.lanse: unknown key; did you mean hardware.lanes?``)."""
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, expected a hardware TOML file")
        d = read_toml(path, "hardware config")
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        if "hardware" in d or "board" in d:
            check_table(d, {"hardware": defaults}, {f"hardware.{k}": r for k, r in _HARDWARE_RULES.items()},
                        str(path), extra=_BOARD_KEYS)
            d = d.get("hardware", {})
        else:
            check_table(d, defaults, _HARDWARE_RULES, str(path))
        try:
            return cls(**d)
        except ValueError as exc:     # the rules between fields (__post_init__)
            raise ConfigError(f"{path}: {exc}") from None


# The schema of a hardware TOML beyond the types of the HardwareConfig defaults, and the [board]
# table that bsnn.hdl.bitstream reads.
_HARDWARE_RULES = {"lanes": integer(1, MAX_LANES), "neuron_lanes": integer(1, MAX_LANES),
                   "max_input_events": optional(integer(1, (1 << 24) - 1)),
                   "weight_memory": choice("bram", "spram"), "neuron_pipeline": choice("short", "long"),
                   "neuron_state": choice("full", "minimal"), "weight_bank_words": integer(0),
                   "neuron_state_memory": choice(*MEMORY_CHOICES),
                   "spike_queue_memory": choice(*MEMORY_CHOICES)}
#: nextpnr's routers (``[board] nextpnr_router``; router1 is nextpnr's default and every
#: committed report's; router2 finishes congested designs such as the parallel core).
NEXTPNR_ROUTERS = ("router1", "router2")
_BOARD_KEYS = {"board.name": text(), "board.device": text(), "board.uart_baud": integer(1),
               "board.clock_mhz": number(0, lo_open=True),
               "board.weights": choice("auto", "bram", "spram"), "board.nextpnr_seed": integer(0),
               "board.nextpnr_router": choice(*NEXTPNR_ROUTERS),
               # (a power of two or 0: bsnn.hdl.batch.batch_words_check, at build time)
               "board.batch_event_words": integer(0),
               # true: the memories the core uses through one port (hardware.neuron_state_memory,
               # spike_queue_memory = "single_port") in SB_SPRAM256KA (iCE40UP5K)
               "board.spram_single_port": flag(),
               # false: no flash loader; SPRAM weights then come over the UART (bsnn board --load)
               "board.flash_loader": flag(),
               # false: no self-test unit (hdl/selftest.py); EXPECT is taken and ignored
               "board.self_test": flag(),
               # true: multipliers in DSP blocks (iCE40: synth_ice40 -dsp; the conv tap
               # generator's address products); default: Yosys' own per family
               "board.dsp": flag()}


@dataclass(frozen=True)
class CoreGeometry:
    """Everything fixed in one build (the *build key*) and the numbers derived from it.

    A bundle can be loaded into a build through the config port if and only if
    :func:`check_fits` accepts it: same layer sizes, ``v_width`` and ``c_width``;
    ``bias_width`` and ``max_input_events`` at most the build's; no current or fire-once layer
    unless the build stores that state.
    """
    sizes: tuple          # (N_0, N_1, ..., N_L)
    v_width: int
    c_width: int
    bias_width: int
    lanes: int
    trace: bool
    max_input_events: int  # capacity of the build
    neuron_lanes: int = 1  # U: neurons updated per cycle
    neuron_pipeline: str = "short"
    state_current: bool = True   # the neuron state memories hold c
    state_fired: bool = True     # ... and the fired flag
    # Per layer: None (dense) or the window of a conv2d / pool2d layer (docs/semantics.md
    # section 10): (kind, (C_in, H, W), (C_out, H_out, W_out), kernel, stride, padding).
    spatial: tuple = ()
    input_channels: bool = False  # input_polarity "channels": unit p * N_0 + i, polarity 1
    result_queue: bool = False    # HardwareConfig.result_queue (no effect on cycles or loading)
    state_memory: str = "bram"    # HardwareConfig.neuron_state_memory
    queue_memory: str = "bram"    # HardwareConfig.spike_queue_memory (no effect on cycles)
    acc_split: bool = False       # HardwareConfig.accumulator_split (no effect on cycles)

    def __post_init__(self):
        if len(self.sizes) < 2:
            raise BuildMismatch("geometry: sizes: need N_0 and at least one layer")
        if len(self.sizes) - 1 > MAX_LAYERS:
            raise BuildMismatch(f"geometry: sizes: at most {MAX_LAYERS} layers, got {len(self.sizes) - 1}")
        if any(n < 1 for n in self.sizes):
            raise BuildMismatch(f"geometry: sizes: every size must be >= 1, got {list(self.sizes)}")
        U = self.neuron_lanes
        if U < 1 or U & (U - 1) or self.lanes % U:
            raise BuildMismatch(f"geometry: neuron_lanes {U} must be a power of two dividing lanes "
                             f"{self.lanes}")
        if not all(MIN_WIDTH <= w <= MAX_WIDTH for w in (self.v_width, self.c_width, self.bias_width)):
            raise BuildMismatch(f"geometry: widths must be in [{MIN_WIDTH}, {MAX_WIDTH}]")
        if self.spatial and len(self.spatial) != len(self.sizes) - 1:
            raise BuildMismatch("geometry: spatial: one entry per layer")
        if self.is_spatial and U != 1:
            raise BuildMismatch(f"geometry: neuron_lanes {U}: a convolutional build updates one "
                                "neuron per cycle (neuron_lanes = 1)")
        if "pool2d" in self.kinds and self.lanes & (self.lanes - 1):
            raise BuildMismatch(f"geometry: lanes {self.lanes}: a build with pool2d layers needs a "
                                "power of two")

    # --- layer kinds (docs/semantics.md section 10) ---------------------------------------
    @property
    def is_spatial(self) -> bool:
        """A convolutional build: conv2d / pool2d layers or input channels (the tap generator
        of hdl/taps.py in front of the synapse lanes)."""
        return self.input_channels or any(s is not None for s in self.spatial)

    @property
    def kinds(self) -> tuple:
        return tuple("dense" if s is None else s[0]
                     for s in (self.spatial or (None,) * self.n_layers))

    def window(self, l: int):
        """``(kind, in_shape, out_shape, kernel, stride, padding)`` of spatial layer ``l``."""
        return self.spatial[l]

    @property
    def units_in(self) -> tuple:
        """Sources of each layer: layer 1's input units (``2 N_0`` with input channels), then
        the outputs of the layer below."""
        return ((self.sizes[0] * (2 if self.input_channels else 1),) + tuple(self.sizes[1:-1]))

    @property
    def positions(self) -> tuple:
        """Output positions ``H_out * W_out`` of each layer (1 for a dense layer)."""
        return tuple(1 if k == "dense" else self.spatial[l][2][1] * self.spatial[l][2][2]
                     for l, k in enumerate(self.kinds))

    @property
    def weight_rows(self) -> tuple:
        """Weight rows of each layer: one per source (dense), one per input channel and kernel
        offset (conv2d), none (pool2d)."""
        rows = []
        for l, k in enumerate(self.kinds):
            if k == "dense":
                rows.append(self.units_in[l])
            elif k == "conv2d":
                _, in_shape, _, kernel, _, _ = self.spatial[l]
                rows.append(in_shape[0] * kernel[0] * kernel[1])
            else:
                rows.append(0)
        return tuple(rows)

    @property
    def acc_depth(self) -> int:
        """Accumulator words: per layer one word of ``P`` channel lanes per chunk and output
        position, at ``position * chunks + chunk``; the most any layer needs."""
        return max(p * c for p, c in zip(self.positions, self.chunks))

    @property
    def acc_words(self) -> tuple:
        """Accumulator words each layer uses (addresses ``0 .. positions * chunks - 1``)."""
        return tuple(p * c for p, c in zip(self.positions, self.chunks))

    @property
    def accumulator_split(self) -> tuple:
        """``(low_width, high_depth)`` of the accumulator lanes (``acc_split``): every word keeps
        the low ``low_width`` bits of each lane, only words ``0 .. high_depth - 1`` the rest, so
        a layer whose words reach beyond ``high_depth`` must need at most ``low_width`` bits
        (its fan-in bound, :attr:`fan_in`, signed). Chosen for the fewest stored bits;
        ``(syn_w, 0)`` (one memory) without ``acc_split`` or where no split saves bits."""
        best = (self.acc_depth * self.syn_w, self.syn_w, 0)
        if self.acc_split and not self.acc_in_flip_flops:
            widths = [bits_for(b) + 1 for b in self.fan_in]
            for low in sorted(set(widths)):
                high_depth = max([n for n, w in zip(self.acc_words, widths) if w > low], default=0)
                bits = self.acc_depth * low + high_depth * (self.syn_w - low)
                if bits < best[0]:
                    best = (bits, low, high_depth)
        return best[1:]

    @property
    def acc_in_flip_flops(self) -> bool:
        """The accumulators are flip-flops (:class:`~bsnn.hdl.register_memory.RegisterMemory`),
        not a RAM: one word, as when every layer fits one word of ``P`` lanes (the parallel core)."""
        return self.acc_depth == 1

    @property
    def stats_in_flip_flops(self) -> bool:
        """Each neuron bank's output statistics are flip-flops (``RegisterMemory``), not a RAM:
        one word, as when the output layer is one group of ``U`` neurons (the parallel core)."""
        return self.groups[-1] == 1

    @property
    def param_sizes(self) -> tuple:
        """Bias / threshold values of each layer: one per neuron (dense), per output channel
        (conv2d), none (pool2d)."""
        return tuple(n if k == "dense" else (self.spatial[l][2][0] if k == "conv2d" else 0)
                     for l, (k, n) in enumerate(zip(self.kinds, self.layer_sizes)))

    @property
    def param_groups(self) -> tuple:
        """Bias / threshold words of each layer in every neuron bank."""
        return tuple(-(-n // self.neuron_lanes) for n in self.param_sizes)

    @property
    def state_groups(self) -> tuple:
        """Neuron-state words of each layer in every bank (a pool2d layer has no state)."""
        return tuple(0 if k == "pool2d" else g for k, g in zip(self.kinds, self.groups))

    @property
    def state_base(self) -> tuple:
        bases, acc = [], 0
        for n in self.state_groups:
            bases.append(acc)
            acc += n
        return tuple(bases)

    # --- layers -----------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def layer_sizes(self) -> tuple:
        return tuple(self.sizes[1:])

    @property
    def chunks(self) -> tuple:
        """Weight words per weight row for each layer: ceil(N_l / P) (dense), ceil(C_out / P)
        (conv2d: a row holds the output channels; pool2d: accumulator words per position)."""
        return tuple(-(-(n if k == "dense" else self.spatial[l][2][0]) // self.lanes)
                     for l, (k, n) in enumerate(zip(self.kinds, self.layer_sizes)))

    @property
    def weight_base(self) -> tuple:
        """First weight-memory word of each layer."""
        bases, acc = [], 0
        for l in range(self.n_layers):
            bases.append(acc)
            acc += self.weight_rows[l] * self.chunks[l]
        return tuple(bases)

    @property
    def weight_depth(self) -> int:
        return sum(self.weight_rows[l] * self.chunks[l] for l in range(self.n_layers))

    @property
    def neuron_base(self) -> tuple:
        """First address of each layer in the concatenated bias / threshold images (config
        addresses): one per neuron of a dense layer, per channel of a conv2d layer."""
        bases, acc = [], 0
        for n in self.param_sizes:
            bases.append(acc)
            acc += n
        return tuple(bases)

    @property
    def neuron_total(self) -> int:
        """Bias / threshold values in all (one per dense neuron; per conv2d channel)."""
        return sum(self.param_sizes)

    @property
    def groups(self) -> tuple:
        """Neuron-update groups per layer: ceil(N_l / U) (one group per cycle)."""
        return tuple(-(-n // self.neuron_lanes) for n in self.layer_sizes)

    @property
    def bank_base(self) -> tuple:
        """First address of each layer in every neuron bank's bias / threshold memories."""
        bases, acc = [], 0
        for n in self.param_groups:
            bases.append(acc)
            acc += n
        return tuple(bases)

    @property
    def param_depth(self) -> int:
        """Depth of each bank's bias and threshold memories."""
        return sum(self.param_groups)

    @property
    def neuron_latency(self) -> int:
        """Cycles from a neuron command to its result (pipeline depth)."""
        return 10 if self.neuron_pipeline == "long" else 3

    def update_cycles(self, groups: int) -> int:
        """Cycles the neuron banks take ``groups`` back-to-back groups in: one per cycle, or
        with single-port state (``state_memory`` not ``"bram"``) one every second cycle."""
        return groups if self.state_memory == "bram" else 2 * groups - 1

    @property
    def result_queue_depth(self) -> int:
        """Groups the result queue holds (:attr:`HardwareConfig.result_queue`): a power of two
        above every group a bank pipeline can hold, the group of its last stage and the cycle the
        registered room flag lags, so that a queue the emitter drains every cycle never stops
        the banks."""
        return 1 << bits_for(self.neuron_latency + 2)

    @property
    def tap_latency(self) -> int:
        """Queues an event passes beyond the dense path's three on its way to the accumulate
        FSM: the tap generator's (hdl/taps.py) in a convolutional build, none otherwise."""
        return 4 if self.is_spatial else 0

    @property
    def address_queues(self) -> int:
        """Queues an event passes in the synapse unit before the accumulate FSM: the input
        queue, then (a dense build) the weight-row product ``index * chunks`` and its sum with
        the layer's base, each registered, or the sum alone when every layer is one weight word
        (``chunks == 1``: no product). A convolutional build counts 3 here, its tap generator's
        extra queues in :attr:`tap_latency`."""
        return 2 if not self.is_spatial and self.max_chunks == 1 else 3

    @property
    def extra_queues(self) -> int:
        """``t`` of the cycle formula: the queues an event passes beyond a dense build's three
        (:attr:`address_queues` - 3 + :attr:`tap_latency`): 0, -1 when every layer of a dense
        build is one weight word, 4 in a convolutional build."""
        return self.address_queues - 3 + self.tap_latency

    @property
    def layer_latency(self) -> int:
        """``D`` of the cycle formula (docs/architecture.md, "Cycle cost"): cycles one layer
        update adds beyond its neuron groups: the synapse unit's three input queues (and
        :attr:`extra_queues`), the flush, the settle cycle, the 2-cycle drain start, the
        command queue, the neuron pipeline and the result queue."""
        return self.neuron_latency + 8 + self.extra_queues

    @property
    def bank_depth(self) -> int:
        """Depth of each neuron bank's state memory (bank u holds neurons j = g*U + u; a
        pool2d layer has no state)."""
        return sum(self.state_groups)

    @property
    def group_w(self) -> int:
        return bits_for(max(self.groups))

    @property
    def max_chunks(self) -> int:
        return max(self.chunks)

    @property
    def acc_addr_w(self) -> int:
        return max(1, ceil_log2(self.acc_depth))

    @property
    def spike_queue_depth(self) -> int:
        """Depth of the spike queue (a ``SyncFIFOBuffered`` of ``SpikeGroupLayout`` entries, one
        per neuron group with a spike; 0 when there is no hidden layer): the most groups of a
        hidden layer, + 1 because the queue's output register takes its first entry one cycle
        late, and at least 3 (``SyncFIFOBuffered`` stores one entry less in a memory, whose address
        would be zero bits wide with a single entry)."""
        hidden = self.groups[:-1]
        return max(3, max(hidden) + 1) if hidden else 0

    # --- widths -----------------------------------------------------------------------------
    @property
    def threshold_width(self) -> int:
        """Bits of a stored threshold: ``theta`` is in ``1 .. 2^(v_width-1) - 1``, unsigned."""
        return self.v_width - 1

    @property
    def stored_bias_width(self) -> int:
        """Bits of a bias memory word: ``bias_width`` rounded up to whole hex digits (the extra
        bits are ignored; a bitstream template then has no constant bit column, hdl/neuron.py)."""
        return -(-self.bias_width // 4) * 4

    @property
    def stored_threshold_width(self) -> int:
        """Bits of a threshold memory word: :attr:`threshold_width` in whole hex digits."""
        return -(-self.threshold_width // 4) * 4

    @property
    def idx_w(self) -> int:
        """Index field width: wide enough to hold the largest size itself, so that an
        out-of-range input index can always be expressed (and reported)."""
        return bits_for(max(self.sizes))

    @property
    def fan_in(self) -> tuple:
        """The most events that reach one neuron (or pool window) of each layer in one step, the
        bound of its ``|I|`` (docs/semantics.md sections 3 and 10.7): layer 1 the input capacity
        (an input index may occur more than once in a step); a dense layer ``N_{l-1}``; a conv2d
        layer or pool2d window :func:`~bsnn.firmware_export.spatial.window_fan_in` (each source
        reaches a neuron through one tap)."""
        bounds = [self.max_input_events]
        for l in range(1, self.n_layers):
            kind = self.kinds[l]
            if kind == "dense":
                bounds.append(self.units_in[l])
                continue
            _, in_shape, _, kernel, _, _ = self.spatial[l]
            bounds.append(window_fan_in(kind, in_shape, kernel))
        return tuple(bounds)

    @property
    def acc_w(self) -> int:
        """Bits of the largest event count into a layer's neuron (``|I|`` is at most that)."""
        return bits_for(max(self.fan_in))

    @property
    def syn_w(self) -> int:
        """Width of the signed synaptic input ``I`` (a lane's signed accumulator; it never
        saturates)."""
        return self.acc_w + 1

    @property
    def in_count_w(self) -> int:
        return bits_for(self.max_input_events)

    @property
    def weight_addr_w(self) -> int:
        return max(1, ceil_log2(self.weight_depth))

    @property
    def cfg_addr_w(self) -> int:
        return max(16, bits_for(max(self.weight_depth, self.neuron_total) - 1))

    @property
    def cfg_data_w(self) -> int:
        return max(self.lanes, self.v_width, self.bias_width, 16, self.in_count_w)

    # --- build key --------------------------------------------------------------------------
    def key(self) -> dict:
        """The build key as a JSON-able dict."""
        return {"sizes": list(self.sizes), "v_width": self.v_width, "c_width": self.c_width,
                "bias_width": self.bias_width, "lanes": self.lanes, "trace": self.trace,
                "max_input_events": self.max_input_events, "neuron_lanes": self.neuron_lanes,
                "neuron_pipeline": self.neuron_pipeline, "state_current": self.state_current,
                "state_fired": self.state_fired,
                # (convolutional builds only: a dense build's key is what it always was)
                **({"spatial": [None if s is None else [s[0], *[list(x) for x in s[1:]]]
                                for s in self.spatial],
                    "input_channels": self.input_channels} if self.is_spatial else {}),
                **({"result_queue": True} if self.result_queue else {}),
                **({"state_memory": self.state_memory} if self.state_memory != "bram" else {}),
                **({"queue_memory": self.queue_memory} if self.queue_memory != "bram" else {}),
                **({"acc_split": True} if self.acc_split else {})}

    @classmethod
    def from_key(cls, key: dict) -> "CoreGeometry":
        return cls(sizes=tuple(int(n) for n in key["sizes"]), v_width=int(key["v_width"]),
                   c_width=int(key["c_width"]), bias_width=int(key["bias_width"]),
                   lanes=int(key["lanes"]), trace=bool(key["trace"]),
                   max_input_events=int(key["max_input_events"]),
                   neuron_lanes=int(key.get("neuron_lanes", 1)),
                   neuron_pipeline=str(key.get("neuron_pipeline", "short")),
                   state_current=bool(key.get("state_current", True)),
                   state_fired=bool(key.get("state_fired", True)),
                   spatial=tuple(None if s is None else (str(s[0]), *[tuple(int(v) for v in x) for x in s[1:]])
                                 for s in key.get("spatial", ())),
                   input_channels=bool(key.get("input_channels", False)),
                   result_queue=bool(key.get("result_queue", False)),
                   state_memory=str(key.get("state_memory", "bram")),
                   queue_memory=str(key.get("queue_memory", "bram")),
                   acc_split=bool(key.get("acc_split", False)))

    @classmethod
    def from_bundle(cls, bundle, hw: HardwareConfig | None = None) -> "CoreGeometry":
        hw = HardwareConfig() if hw is None else hw
        cap = bundle.max_input_events if hw.max_input_events is None else hw.max_input_events
        geom = cls(sizes=tuple(int(n) for n in bundle.sizes), v_width=int(bundle.v_width),
                   c_width=int(bundle.c_width), bias_width=int(bundle.bias_width),
                   lanes=hw.lanes, trace=hw.trace, max_input_events=int(cap),
                   neuron_lanes=hw.neuron_lanes, neuron_pipeline=hw.neuron_pipeline,
                   state_current=hw.neuron_state == "full" or any(l.current for l in bundle.layers),
                   state_fired=hw.neuron_state == "full" or any(l.fire_once for l in bundle.layers),
                   spatial=spatial_of(bundle), input_channels=bundle.input_polarity == "channels",
                   result_queue=hw.result_queue, state_memory=hw.neuron_state_memory,
                   queue_memory=hw.spike_queue_memory, acc_split=hw.accumulator_split)
        check_fits(bundle, geom)
        return geom


def spatial_of(bundle) -> tuple:
    """The per-layer windows of a bundle as :attr:`CoreGeometry.spatial` holds them (empty for
    a dense bundle)."""
    from bsnn.firmware_export.spatial import layer_input_shapes, output_shape
    if bundle.is_dense:
        return ()
    out = []
    for layer, shape in zip(bundle.layers, layer_input_shapes(bundle)):
        if layer.kind == "dense":
            out.append(None)
        else:
            out.append((layer.kind, tuple(shape), tuple(output_shape(layer, shape)),
                        tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding)))
    return tuple(out)


def build_key(bundle, hw: HardwareConfig | None = None) -> dict:
    """The build key of the build :func:`bsnn.hdl.generate.generate` makes for ``bundle`` and ``hw``:
    everything a second bundle must match (see :func:`check_fits`) to be loadable into it."""
    return CoreGeometry.from_bundle(bundle, hw).key()


def check_fits(bundle, build) -> None:
    """Raise :class:`BuildMismatch` unless ``bundle`` can be loaded into ``build``.

    ``build`` is a :class:`CoreGeometry`, a build-key dict, or a hardware manifest dict (as
    written by :func:`bsnn.hdl.generate.generate`, whose ``"build_key"`` entry is used).
    """
    if isinstance(build, dict):
        build = CoreGeometry.from_key(build.get("build_key", build))
    problems = []
    if spatial_of(bundle) != tuple(build.spatial) or (
            (bundle.input_polarity == "channels") != build.input_channels):
        problems.append("layer kinds, windows or input polarity differ from the build's")
    if list(bundle.sizes) != list(build.sizes):
        problems.append(f"sizes {list(bundle.sizes)} != build's {list(build.sizes)}")
    for name in ("v_width", "c_width"):
        if getattr(bundle, name) != getattr(build, name):
            problems.append(f"{name} {getattr(bundle, name)} != build's {getattr(build, name)}")
    if bundle.bias_width > build.bias_width:
        problems.append(f"bias_width {bundle.bias_width} > build's {build.bias_width}")
    if bundle.max_input_events > build.max_input_events:
        problems.append(f"max_input_events {bundle.max_input_events} > build's capacity "
                        f"{build.max_input_events}")
    if any(l.current for l in bundle.layers) and not build.state_current:
        problems.append("a layer uses the synaptic current, the build stores none "
                        "(neuron_state = \"minimal\")")
    if any(l.fire_once for l in bundle.layers) and not build.state_fired:
        problems.append("a layer fires at most once, the build stores no fired flags "
                        "(neuron_state = \"minimal\")")
    if bundle.time_steps > (1 << STEP_WIDTH) - 1:
        problems.append(f"time_steps {bundle.time_steps} > {(1 << STEP_WIDTH) - 1}")
    if problems:
        raise BuildMismatch("bundle does not fit this build: " + "; ".join(problems))
