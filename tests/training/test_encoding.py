import numpy as np
import torch

from bsnn.firmware_export.encoding import Encoder, encode_events, encode_images, max_events_per_step


def _img():
    return np.array([[0, 1, 64, 127, 128, 200, 254, 255]], dtype=np.uint8)


def test_rate_counts_and_spread():
    for T in (1, 3, 4, 8):
        on, off = encode_images(_img(), T, "rate")
        assert on.shape == (T, 1, 8) and on.dtype == torch.int64 and int(off.abs().sum()) == 0
        assert on.max() <= 1
        expect = np.floor(_img()[0].astype(float) * T / 255 + 0.5)
        assert on.sum(0)[0].tolist() == expect.tolist()


def test_threshold_and_latency():
    on, _ = encode_images(_img(), 4, "threshold", threshold=128)
    assert on.sum(0)[0].tolist() == [0, 0, 0, 0, 4, 4, 4, 4]
    on, _ = encode_images(_img(), 4, "latency", min_value=1)
    assert on.sum(0)[0].tolist() == [0, 1, 1, 1, 1, 1, 1, 1]
    first = on[:, 0].argmax(0)
    assert first[7] == 0 and first[1] == 3 and first[4] == 1  # brighter earlier


def test_poisson_seeded():
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, _ = encode_images(_img(), 16, "poisson", generator=g1)
    b, _ = encode_images(_img(), 16, "poisson", generator=g2)
    assert torch.equal(a, b) and a[:, 0, 0].sum() == 0 and a[:, 0, 7].sum() == 16


def test_events_binning_polarity_duplicates():
    ev = np.zeros(5, dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("ts", np.int64)])
    ev["x"] = [1, 1, 2, 33, 0]
    ev["y"] = [0, 0, 0, 33, 1]
    ev["p"] = [1, 1, 0, 1, 0]
    ev["ts"] = [0, 10, 100_000, 299_999, 500_000]
    on, off = encode_events([ev], 3, window_us=300_000)
    assert on.shape == (3, 1, 1156)
    assert on[0, 0, 1] == 2  # duplicates count
    assert off[1, 0, 2] == 1
    assert on[2, 0, 33 * 34 + 33] == 1
    assert off[2, 0, 34] == 1  # after the window -> last step
    assert max_events_per_step(on, off) == 2
    on2, _ = encode_events([ev], 3, max_per_pixel=1)
    assert on2[0, 0, 1] == 1


def test_encoder_bound():
    enc = Encoder("rate", 4)
    on, off = enc(np.full((2, 784), 255, np.uint8))
    assert max_events_per_step(on, off) <= enc.max_input_events(784)
