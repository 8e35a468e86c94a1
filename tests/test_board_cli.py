"""The board checker's comparison loop, against a stand-in device that answers from the golden
model (exact) or with one record changed (must be reported). The protocol itself runs against
the board top in simulation in tests/sim/test_board_uart.py."""
import asyncio

import numpy as np

from bsnn.firmware_export.bundle import random_bundle
from bsnn.firmware_export.events import counts_from_events, random_counts
from bsnn.firmware_export.golden import run_golden
from bsnn.hdl.layouts import ResultKind
from bsnn.board import check_samples
from bsnn.sim.board_host import InferenceResult
from bsnn.sim.check import expected_records


class GoldenDevice:
    """Answers infer(steps) like a correct board would, optionally corrupting one sample."""

    def __init__(self, bundle, corrupt_sample=None):
        from bsnn.hdl.config import CoreGeometry
        self.bundle, self.corrupt, self.calls = bundle, corrupt_sample, 0
        self.geom = CoreGeometry.from_bundle(bundle)      # (as BoardHost.geom)

    async def infer(self, steps):
        on, off = counts_from_events(self.bundle, [steps])
        res = run_golden(self.bundle, on, off)
        kinds = {"spike": ResultKind.SPIKE, "potential": ResultKind.POTENTIAL, "class": ResultKind.CLASS}
        records = []
        for r in expected_records(self.bundle, res, 0):
            if r[0] == "spike":
                records.append((kinds["spike"], r[1], r[2], r[3], 0))
            elif r[0] == "potential":
                records.append((kinds["potential"], 0, r[1], r[2], r[3]))
            else:
                records.append((kinds["class"], 0, 0, r[1], 0))
        if self.calls == self.corrupt:
            k, t, layer, j, v = records[-2]
            records[-2] = (k, t, layer, j, v + 1)
        self.calls += 1
        return InferenceResult(records=records, cycles=100, error=0)


def test_check_samples_passes_exact_device_and_reports_a_wrong_one():
    rng = np.random.default_rng(2)
    bundle = random_bundle(rng, sizes=[10, 6, 3])
    on, off = random_counts(bundle, 5, rng)
    labels = run_golden(bundle, on, off).prediction.tolist()
    good = asyncio.run(check_samples(GoldenDevice(bundle), bundle, on, off, labels))
    assert good["bit_exact"] and good["accuracy"] == 1.0 and good["cycles_per_inference"] == 100
    # The core's own cycles: the cycle formula per sample, as the RTL tests check it.
    from bsnn.hdl.generate import cycle_estimate
    gold = run_golden(bundle, on, off)
    geom = GoldenDevice(bundle).geom
    want = [cycle_estimate(geom, bundle.time_steps, gold.events_per_layer[:, b].tolist(),
                           [s[:, b].numpy() for s in gold.spikes]) for b in range(5)]
    assert good["core_cycles_per_inference"] == sum(want) / 5
    assert good["inferences_per_s"] > 0
    bad = asyncio.run(check_samples(GoldenDevice(bundle, corrupt_sample=3), bundle, on, off, labels))
    assert not bad["bit_exact"] and bad["mismatch_count"] == 1 and bad["mismatches"][0].startswith("sample 3:")


class BatchDevice:
    """Answers run_batch(images) like a board with a batch memory of ``words`` words."""

    def __init__(self, bundle, words, wrong_image=None):
        from bsnn.hdl.config import CoreGeometry
        self.bundle, self.words, self.wrong = bundle, words, wrong_image
        self.geom = CoreGeometry.from_bundle(bundle)
        self.batches = []

    async def run_batch(self, images):
        from bsnn.sim.board_host import BatchResult, batch_words
        assert batch_words(images) <= self.words
        on, off = counts_from_events(self.bundle, images)
        classes = run_golden(self.bundle, on, off).prediction.tolist()
        first = sum(len(b) for b in self.batches)
        if self.wrong is not None and first <= self.wrong < first + len(classes):
            classes[self.wrong - first] += 1
        self.batches.append(images)
        return BatchResult(classes=classes, errors=[0] * len(classes), cycles=103 * len(classes),
                           count=len(classes))


def test_measure_batches_splits_to_the_memory_and_checks_every_class():
    from bsnn.board import measure_batches
    from bsnn.firmware_export.errors import InputError
    from bsnn.sim.board_host import batch_words
    rng = np.random.default_rng(3)
    bundle = random_bundle(rng, sizes=[10, 6, 3])
    on, off = random_counts(bundle, 9, rng)
    from bsnn.firmware_export.events import events_from_counts
    sizes = [batch_words([events_from_counts(on, off, sample=b)]) for b in range(9)]
    words = max(sizes) * 3
    dev = BatchDevice(bundle, words)
    r = asyncio.run(measure_batches(dev, bundle, on, off, words))
    assert r["batch_classes_exact"] and r["batch_images"] == 9 and r["batch_cycles"] == 9 * 103
    assert sum(len(b) for b in dev.batches) == 9 and len(dev.batches) == r["batches"] > 1
    # greedy: a batch holds as many samples as fit
    assert all(batch_words(a) + batch_words(b[:1]) > words
               for a, b in zip(dev.batches, dev.batches[1:]))
    bad = asyncio.run(measure_batches(BatchDevice(bundle, words, wrong_image=4), bundle, on, off, words))
    assert not bad["batch_classes_exact"] and bad["batch_class_mismatches"] == 1
    try:
        asyncio.run(measure_batches(dev, bundle, on, off, min(sizes) - 1))
        raise AssertionError("a sample over the memory was not refused")
    except InputError as exc:
        assert "--batch: sample 0" in str(exc) or "--batch: sample" in str(exc)


def test_board_cli_batch_refused_for_a_build_without_batch_memory(tmp_path, capsys):
    import json
    from pathlib import Path

    from bsnn.board import main
    from bsnn.hdl.config import CoreGeometry, HardwareConfig
    repo = Path(__file__).resolve().parents[1]
    from bsnn.firmware_export.bundle import load_bundle
    bundle = load_bundle(repo / "models" / "default")
    geom = CoreGeometry.from_bundle(bundle, HardwareConfig())
    (tmp_path / "hardware.json").write_text(json.dumps({"build_key": geom.key(),
                                                        "batch_event_words": 0}))
    rc = main(["--port", "/dev/null-nonexistent", "--build", str(tmp_path), "--model",
               str(repo / "models" / "default"), "--batch", "4"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "has no batch memory" in err, err


def test_board_cli_needs_load_for_spram_weights_without_a_flash_loader(tmp_path, capsys):
    """A bitstream without the flash loader ([board] flash_loader = false) starts with empty
    SPRAM weights: `bsnn board` refuses to run it without --load, before the port is opened."""
    import json
    from pathlib import Path

    from bsnn.board import main
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.hdl.config import CoreGeometry, HardwareConfig
    repo = Path(__file__).resolve().parents[1]
    bundle = load_bundle(repo / "models" / "default")
    geom = CoreGeometry.from_bundle(bundle, HardwareConfig(weight_memory="spram"))
    manifest = {"build_key": geom.key(), "batch_event_words": 0, "weights_in": "spram",
                "flash_loader": False}
    (tmp_path / "hardware.json").write_text(json.dumps(manifest))
    argv = ["--port", "/dev/null-nonexistent", "--build", str(tmp_path), "--model",
            str(repo / "models" / "default")]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "add --load" in err, err
    # With --load the refusal is gone: it gets as far as the (missing) port.
    rc = main(argv + ["--load"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "add --load" not in err, err


def test_board_host_refuses_batch_commands_to_a_build_without_batch_memory():
    """BoardHost sends no batch command to a build whose INFO says it has no batch memory (its
    decoder would take the words' bytes for commands); a batch over the memory is refused before
    anything is sent."""
    import pytest

    from bsnn.hdl.config import CoreGeometry
    from bsnn.hdl.hostlink import PROTOCOL_VERSION, Opcode, Reply, frame_sizes
    from bsnn.sim.board_host import BoardHost, ProtocolError

    geom = CoreGeometry(sizes=(12, 9, 5), v_width=9, c_width=8, bias_width=5, lanes=4,
                        trace=True, max_input_events=8)
    sz = frame_sizes(geom)

    class Link:
        def __init__(self, batch):
            self.sent = bytearray()
            self.info = bytes([Reply.INFO, PROTOCOL_VERSION, geom.idx_w, geom.v_width,
                               geom.cfg_addr_w, geom.cfg_data_w, sz["A"], sz["D"], sz["K"],
                               sz["R"], batch])
            self.buf = bytearray()

        async def write(self, data):
            self.sent += data
            if data == bytes([Opcode.INFO]):
                self.buf += self.info

        async def read(self, n):
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out

    image = [[(1, 1)], [], [(2, 0)]]
    for call in (lambda h: h.run_batch([image]), lambda h: h.batch_load([image]),
                 lambda h: h.batch_run(1)):
        link = Link(0)
        with pytest.raises(ProtocolError, match="no batch memory"):
            asyncio.run(call(BoardHost(link, geom)))
        assert bytes(link.sent) == bytes([Opcode.INFO])
    link = Link(4)                                   # 16 words; the image is 5
    with pytest.raises(ValueError, match="holds 16"):
        asyncio.run(BoardHost(link, geom).run_batch([image] * 4))
    assert bytes(link.sent) == bytes([Opcode.INFO])
