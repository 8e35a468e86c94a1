"""Stream payload layouts of the BSNN core, defined once for the hardware and its testbenches."""
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from .config import COUNT_WIDTH, LAYER_WIDTH, STEP_WIDTH

__all__ = [
    "InputEventLayout", "ResultLayout", "ConfigWriteLayout", "LayerModeLayout",
    "SynapseEventLayout", "SynapticInputLayout", "SpikeGroupLayout", "NeuronCommandLayout", "NeuronResultLayout",
    "ClassLayout", "NeuronStateLayout", "OutputStatsLayout", "AccumulatorLayout",
    "ResultKind", "ConfigTarget", "GlobalAddress", "ResetMode", "ReadoutRule", "ErrorBit",
]


class ResultKind:
    """``kind`` field of :class:`ResultLayout`."""
    SPIKE = 0
    POTENTIAL = 1
    CLASS = 2


class ConfigTarget:
    """``target`` field of :class:`ConfigWriteLayout`."""
    WEIGHTS = 0
    BIAS = 1
    THRESHOLD = 2
    LAYER_MODE = 3
    GLOBAL = 4


class GlobalAddress:
    """Addresses of the GLOBAL config target."""
    TIME_STEPS = 0
    READOUT = 1
    MAX_INPUT_EVENTS = 2
    TRACE = 3


class ResetMode:
    SUBTRACT = 0
    ZERO = 1
    NONE = 2          # 3 behaves as NONE as well

    NAMES = {"subtract": 0, "zero": 1, "none": 2}


class ReadoutRule:
    SPIKE_COUNT = 0
    POTENTIAL = 1
    FIRST_SPIKE = 2   # 3 behaves as SPIKE_COUNT

    NAMES = {"spike_count": 0, "potential": 1, "first_spike": 2}


class ErrorBit:
    """Bits of the core's sticky ``error`` output."""
    INDEX = 0         # an input event had index >= N_0 (dropped)
    OVERFLOW = 1      # an input event beyond max_input_events in its step (dropped)
    WIDTH = 2


class InputEventLayout(data.StructLayout):
    """An input event, or (``end_of_step = 1``) the end of the current time step."""
    def __init__(self, idx_w):
        super().__init__({"index": unsigned(idx_w), "polarity": 1, "end_of_step": 1})


class ResultLayout(data.StructLayout):
    """A result record (see :class:`ResultKind`)."""
    def __init__(self, idx_w, v_width):
        super().__init__({"kind": 2, "step": STEP_WIDTH, "layer": LAYER_WIDTH,
                          "index": unsigned(idx_w), "value": signed(v_width)})


class ConfigWriteLayout(data.StructLayout):
    """A write into the core's parameter memories or registers (see :class:`ConfigTarget`)."""
    def __init__(self, addr_w, data_w):
        super().__init__({"target": 3, "address": unsigned(addr_w), "data": unsigned(data_w)})


class LayerModeLayout(data.StructLayout):
    """Packing of a LAYER_MODE config word (the low ``LayerModeLayout().size`` bits of ``data``)."""
    def __init__(self):
        super().__init__({"current": 1, "fire_once": 1, "reset": 2, "leak_v": 6, "leak_c": 6})


# --- internal streams -------------------------------------------------------------------------

class SynapseEventLayout(data.StructLayout):
    """An event into the synapse unit; ``flush = 1`` ends the layer's events (drain the sums)."""
    def __init__(self, idx_w):
        super().__init__({"index": unsigned(idx_w), "polarity": 1, "flush": 1})


class SynapticInputLayout(data.StructLayout):
    """The synaptic inputs of one group of ``U`` neurons: ``value[u]`` = I[group * U + u];
    ``param`` the group's bias / threshold word (its group in a dense layer, its output channel
    in a conv2d layer); ``last`` marks the layer's last group (lanes beyond the layer's size
    carry no meaning)."""
    def __init__(self, group_w, syn_w, U=1):
        super().__init__({"group": unsigned(group_w), "param": unsigned(group_w),
                          "value": data.ArrayLayout(signed(syn_w), U), "last": 1})


class NeuronCommandLayout(data.StructLayout):
    """Update neuron ``index`` (bias and threshold word ``param``) with input ``value``, or
    (``dump = 1``) only report its state."""
    def __init__(self, idx_w, syn_w):
        super().__init__({"index": unsigned(idx_w), "param": unsigned(idx_w), "value": signed(syn_w),
                          "last": 1, "dump": 1})


class SpikeGroupLayout(data.StructLayout):
    """A spike-queue entry: the spikes (``mask`` bit u = neuron group * U + u) of one group."""
    def __init__(self, group_w, U):
        super().__init__({"group": unsigned(group_w), "mask": U})


class NeuronResultLayout(data.StructLayout):
    """The state of one neuron after its update (or as stored, for a dump)."""
    def __init__(self, idx_w, v_width):
        super().__init__({"index": unsigned(idx_w), "spike": 1, "v": signed(v_width),
                          "count": COUNT_WIDTH, "first": STEP_WIDTH, "fired": 1,
                          "last": 1, "dump": 1})


class ClassLayout(data.StructLayout):
    """The readout's decision: the predicted class and its final potential."""
    def __init__(self, idx_w, v_width):
        super().__init__({"index": unsigned(idx_w), "value": signed(v_width)})


# --- memories ----------------------------------------------------------------------------------

class NeuronStateLayout(data.StructLayout):
    """A word of a neuron bank's state memory: ``v``, and ``c`` / ``fired`` only where the build
    stores them (:attr:`CoreGeometry.state_current` / :attr:`CoreGeometry.state_fired`)."""
    def __init__(self, v_width, c_width, *, current=True, fired=True):
        fields = {"v": signed(v_width)}
        if current:
            fields["c"] = signed(c_width)
        if fired:
            fields["fired"] = 1
        super().__init__(fields)


class OutputStatsLayout(data.StructLayout):
    """A word of a neuron bank's output-layer statistics: spike count and first-spike step."""
    def __init__(self):
        super().__init__({"count": COUNT_WIDTH, "first": STEP_WIDTH})


class AccumulatorLayout(data.ArrayLayout):
    """A word of the synapse unit's accumulator memory: the signed synaptic inputs of ``P``
    lanes (``syn_w`` bits each)."""
    def __init__(self, syn_w, lanes):
        super().__init__(signed(syn_w), lanes)
