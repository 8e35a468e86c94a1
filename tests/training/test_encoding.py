"""The input encoders (rules: docs/semantics.md section 9): each kind's counts, the N-MNIST window
and late events, specs checked and completed, and the encoder a saved bundle describes giving
the very events training fed the model."""
import numpy as np
import pytest
import torch

from bsnn.firmware_export.bundle import load_bundle, random_bundle, save_bundle
from bsnn.firmware_export.encoding import (Encoder, EncodingError, complete_encoding, encode_events,
                                           encode_images, encoding_of, max_events_per_step)
from .conftest import need


def _img():
    return np.array([[0, 1, 64, 127, 128, 200, 254, 255]], dtype=np.uint8)


def _events(xs, ys, ps, ts):
    ev = np.zeros(len(ts), dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("ts", np.int64)])
    ev["x"], ev["y"], ev["p"], ev["ts"] = xs, ys, ps, ts
    return ev


def test_rate_counts_and_spread():
    for T in (1, 3, 4, 8):
        on, off = Encoder({"kind": "rate"}, T)(_img())
        assert on.shape == (T, 1, 8) and on.dtype == torch.int64 and int(off.abs().sum()) == 0
        assert on.max() <= 1
        expect = np.floor(_img()[0].astype(float) * T / 255 + 0.5)
        assert on.sum(0)[0].tolist() == expect.tolist()
    # spread evenly: q = round(200 * 8 / 255) = 6 spikes at the steps where floor((t+1) q / T) grows
    on, _ = Encoder({"kind": "rate"}, 8)(np.array([[200]], dtype=np.uint8))
    assert on[:, 0, 0].tolist() == [0, 1, 1, 1, 0, 1, 1, 1]


def test_threshold_and_latency():
    on, _ = Encoder({"kind": "threshold", "threshold": 128}, 4)(_img())
    assert on.sum(0)[0].tolist() == [0, 0, 0, 0, 4, 4, 4, 4]
    on, _ = Encoder({"kind": "latency"}, 4)(_img())       # min_value 1 by default
    assert on.sum(0)[0].tolist() == [0, 1, 1, 1, 1, 1, 1, 1]
    first = on[:, 0].argmax(0)
    assert first[7] == 0 and first[1] == 3 and first[4] == 1  # brighter earlier: floor((255-x) T / 256)
    on, _ = Encoder({"kind": "latency", "min_value": 0}, 4)(_img())
    assert on[:, 0, 0].tolist() == [0, 0, 0, 1]                # black fires last when min_value = 0


def test_poisson_seeded_from_the_spec_or_drawn_from_a_generator():
    enc = Encoder({"kind": "poisson", "seed": 3}, 16)
    a, _ = enc(_img())
    assert torch.equal(a, enc(_img())[0]) and a[:, 0, 0].sum() == 0 and a[:, 0, 7].sum() == 16
    assert not torch.equal(a, Encoder({"kind": "poisson", "seed": 4}, 16)(_img())[0])
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(enc(_img(), generator=g1)[0], encode_images(_img(), 16, "poisson", generator=g2)[0])


def test_events_binning_polarity_duplicates():
    ev = _events([1, 1, 2, 33, 0], [0, 0, 0, 33, 1], [1, 1, 0, 1, 0], [0, 10, 100_000, 299_999, 500_000])
    on, off = Encoder({"kind": "events", "window_us": 300_000}, 3)([ev])
    assert on.shape == (3, 1, 1156)
    assert on[0, 0, 1] == 2  # duplicates count
    assert off[1, 0, 2] == 1
    assert on[2, 0, 33 * 34 + 33] == 1
    assert off[2, 0, 34] == 1  # after the window -> last step
    assert max_events_per_step(on, off) == 2
    on2, _ = Encoder({"kind": "events", "max_per_pixel": 1}, 3)([ev])
    assert on2[0, 0, 1] == 1


def test_nmnist_window_is_the_whole_sample_divided_into_T_steps():
    # window_us is the length of all T steps together: step = floor(ts * T / window_us), here
    # 37.5 ms per step, not one window_us per step.
    ts = [0, 37_499, 37_500, 100_000, 262_499, 262_500, 299_999]
    on, _ = Encoder({"kind": "events", "window_us": 300_000}, 8)([_events([0] * 7, [0] * 7, [1] * 7, ts)])
    assert on[:, 0, 0].tolist() == [2, 1, 1, 0, 0, 0, 1, 2]


@pytest.mark.parametrize("late, last_on, last_off", [("last_step", 3, 1), ("drop", 2, 0)])
def test_nmnist_late_events_go_to_the_last_step_or_are_dropped(late, last_on, last_off):
    # T = 6 steps of 50 ms: ON at 250 ms and 299.999 ms fall in the last step; ON at 300 ms and
    # OFF at 10 s come after the window.
    ts = [250_000, 299_999, 300_000, 10_000_000]
    enc = Encoder({"kind": "events", "window_us": 300_000, "late_events": late}, 6)
    on, off = enc([_events([5, 5, 5, 5], [0, 0, 0, 0], [1, 1, 1, 0], ts)])
    assert on[:, 0, 5].tolist() == [0, 0, 0, 0, 0, last_on]
    assert off[:, 0, 5].tolist() == [0, 0, 0, 0, 0, last_off]


def test_events_outside_the_sensor_or_before_time_zero_are_refused():
    enc = Encoder({"kind": "events", "width": 4, "height": 3}, 2)
    assert enc([_events([3], [2], [1], [0])])[0][0, 0, 2 * 4 + 3] == 1
    with pytest.raises(ValueError, match="outside the 4x3 sensor"):
        enc([_events([4], [0], [1], [0])])
    with pytest.raises(ValueError, match="outside the 4x3 sensor"):
        enc([_events([0], [3], [1], [0])])
    with pytest.raises(ValueError, match="negative timestamp"):
        enc([_events([0], [0], [1], [-1])])


def test_specs_are_completed_and_checked():
    assert complete_encoding({"kind": "events"}) == {
        "kind": "events", "window_us": 300_000, "late_events": "last_step", "max_per_pixel": None,
        "width": 34, "height": 34}
    assert Encoder({"kind": "latency"}, 4).spec == {"kind": "latency", "min_value": 1}
    with pytest.raises(EncodingError, match=r"^encoding.window: unknown parameter of events"):
        Encoder({"kind": "events", "window": 300_000}, 8)
    with pytest.raises(EncodingError, match=r"^encoding.kind: must be one of"):
        Encoder({"kind": "spikes"}, 8)
    with pytest.raises(EncodingError, match=r"^encoding.min_value: missing"):
        complete_encoding({"kind": "latency"}, require_all=True)
    bundle = random_bundle(np.random.default_rng(0), sizes=[8, 3], encoding={"kind": "latency", "min_value": 9})
    assert encoding_of(bundle) == {"kind": "latency", "min_value": 9}
    assert encoding_of(bundle, "threshold") == {"kind": "threshold", "threshold": 128}


def test_encoder_bound():
    enc = Encoder({"kind": "rate"}, 4)
    on, off = enc(np.full((2, 784), 255, np.uint8))
    assert max_events_per_step(on, off) <= enc.max_input_events(784) == 784
    assert Encoder({"kind": "events", "max_per_pixel": 2}, 4).max_input_events(1156) == 2 * 2 * 1156
    assert Encoder({"kind": "events"}, 4).max_input_events(1156) is None


def _bundle_as_exported(cfg, tmp_path):
    """A bundle recording a training config's encoding as the exporter does, saved and loaded."""
    from bsnn.training.train import encoding_spec
    size = 1156 if cfg["data"]["dataset"] == "nmnist" else 784
    bundle = random_bundle(np.random.default_rng(1), sizes=[size, 3], time_steps=cfg["encoding"]["time_steps"],
                           encoding=encoding_spec(cfg))
    save_bundle(bundle, tmp_path / "b")
    return load_bundle(tmp_path / "b")


@pytest.mark.parametrize("dataset, encoding", [
    pytest.param("mnist", {"kind": "rate", "time_steps": 4}, marks=need("mnist")),
    pytest.param("mnist", {"kind": "latency", "time_steps": 8, "min_value": 30}, marks=need("mnist")),
    pytest.param("mnist", {"kind": "threshold", "time_steps": 3, "threshold": 90}, marks=need("mnist")),
    pytest.param("nmnist", {"kind": "events", "time_steps": 8, "window_us": 300_000}, marks=need("nmnist-small")),
    pytest.param("nmnist", {"kind": "events", "time_steps": 5, "window_us": 250_000, "late_events": "drop",
                            "max_per_pixel": 1}, marks=need("nmnist-small")),
])
def test_encoder_from_the_bundle_reproduces_the_training_encoder(tmp_path, dataset, encoding):
    from bsnn.training.data import load_encoded
    from bsnn.training.train import build_data, load_config
    cfg = load_config(None, {"data": {"dataset": dataset, "train_limit": 1, "test_limit": 40},
                             "encoding": encoding})
    _, test = build_data(cfg)
    on, off, labels = test.batch(torch.arange(40))
    bundle = _bundle_as_exported(cfg, tmp_path)
    data = load_encoded(bundle, dataset, "test", 40)          # what bsnn eval and bsnn board feed
    assert data.encoding == bundle.encoding and data.encoding["kind"] == encoding["kind"]
    assert torch.equal(data.on, on) and torch.equal(data.labels, labels)
    assert torch.equal(data.off, torch.zeros_like(on) if off is None else off)
    assert int(on.sum()) > 0
