"""`bsnn flash-image`: the model's SPI flash image for a board build, its flashing commands, and
one-line refusals."""
import json
import subprocess
import sys
from pathlib import Path

from bsnn.firmware_export.bundle import load_bundle
from bsnn.hdl.bitstream import board_config_path
from bsnn.hdl.board import BOARDS, plan_build
from bsnn.hdl.config import HardwareConfig
from bsnn.hdl.flash_image import key_hash, parse_image
from bsnn.hdl.images import config_writes_for

REPO = Path(__file__).resolve().parents[1]
BSNN = [sys.executable, "-m", "bsnn"]


def run(*args):
    return subprocess.run(BSNN + list(args), capture_output=True, text=True)


def test_flash_image_for_the_bitstream_build(tmp_path):
    model = REPO / "models" / "default"
    for board, offset, tool in (("icebreaker", "0x100000", "iceprog -o 0x100000"),
                                ("ulx3s-85f", "0x300000", "openFPGALoader -b ulx3s -f -o 0x300000")):
        out = tmp_path / f"{board}.bin"
        res = run("flash-image", "--board", board, "--model", str(model), "--out", str(out))
        assert res.returncode == 0, res.stderr
        assert offset in res.stdout and f"{tool} {out}" in res.stdout
        # The key of the build `bsnn bitstream` makes for this board (its TOML, its weights).
        bundle = load_bundle(model)
        hw = HardwareConfig.from_toml(board_config_path(board))
        _, geom, _ = plan_build(bundle, hw, BOARDS[board], "auto" if board == "icebreaker" else "bram")
        image = parse_image(out.read_bytes(), geom)
        assert image.key == key_hash(geom) and f"build key {key_hash(geom):08x}" in res.stdout
        assert image.writes == config_writes_for(bundle, geom)


def test_flash_image_refusals_are_one_line(tmp_path):
    model = REPO / "models" / "default"
    res = run("flash-image", "--board", "nosuchboard", "--model", str(model), "--out", str(tmp_path / "x.bin"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "unknown board" in res.stderr
    # A build of another key: the bundle does not fit it.
    build = tmp_path / "build"
    build.mkdir()
    key = {"sizes": [10, 6, 3], "v_width": 8, "c_width": 8, "bias_width": 4, "lanes": 4,
           "trace": True, "max_input_events": 10}
    (build / "hardware.json").write_text(json.dumps({"build_key": key, "board": "icebreaker"}))
    res = run("flash-image", "--board", "icebreaker", "--model", str(model), "--build", str(build),
              "--out", str(tmp_path / "y.bin"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "does not fit" in res.stderr
    assert not (tmp_path / "y.bin").exists() and not (tmp_path / "x.bin").exists()
    res = run("flash-image", "--board", "ulx3s-85f", "--model", str(model), "--build", str(build),
              "--out", str(tmp_path / "z.bin"))
    assert res.returncode == 2 and "build is for icebreaker" in res.stderr
    # A bitstream without the flash loader reads no image: refused for its TOML and its build.
    res = run("flash-image", "--board", "icebreaker", "--model", str(model), "--hw-config",
              str(REPO / "hdl" / "boards" / "icebreaker-throughput.toml"), "--out", str(tmp_path / "t.bin"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "flash_loader is false" in res.stderr
    (build / "hardware.json").write_text(json.dumps({"build_key": key, "board": "icebreaker",
                                                     "flash_loader": False}))
    res = run("flash-image", "--board", "icebreaker", "--model", str(model), "--build", str(build),
              "--out", str(tmp_path / "u.bin"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no flash loader" in res.stderr
    assert not (tmp_path / "t.bin").exists() and not (tmp_path / "u.bin").exists()


def test_loader_length_counter_holds_exactly_the_longest_image():
    """``length_bits`` counts the config words of a build from its geometry; it must be the
    number of writes ``config_writes_for`` makes (dense and conv builds), plus the room of a
    self-test, so the loader's length counter neither truncates an image nor wastes bits."""
    from bsnn.hdl.config import CoreGeometry
    from bsnn.hdl.flash_image import (CRC_BYTES, HEADER_BYTES, SELF_TEST_MAX_BYTES, flash_image,
                                      length_bits, max_payload_bytes)
    from bsnn.hdl.hostlink import config_frame
    root = Path(__file__).resolve().parent.parent / "models"
    for name, hw in (("default", HardwareConfig(lanes=8)),
                     ("conv_mnist", HardwareConfig(lanes=8))):
        bundle = load_bundle(root / name)
        geom = CoreGeometry.from_bundle(bundle, hw)
        payload = len(flash_image(bundle, geom)) - HEADER_BYTES - CRC_BYTES
        frame = len(config_frame(geom, 0, 0, 0))
        assert payload == len(config_writes_for(bundle, geom, trace=True)) * frame
        longest = payload + SELF_TEST_MAX_BYTES
        assert length_bits(geom) == longest.bit_length() and longest <= max_payload_bytes(geom)


def test_flash_image_carries_the_golden_vector(tmp_path):
    """The image ends with the self-test: EXPECT with the golden model's signature, then the
    inference of MNIST test image 0 (``models/mnist``, trained on MNIST); ``--no-self-test``
    leaves it out, a sample beyond the test split is refused in one line."""
    from bsnn.board import golden_vector
    from bsnn.hdl.selftest import expect_word
    model = REPO / "models" / "mnist"
    bundle = load_bundle(model)
    hw = HardwareConfig.from_toml(board_config_path("ulx3s-85f"))
    _, geom, _ = plan_build(bundle, hw, BOARDS["ulx3s-85f"], "bram")
    vector, described = golden_vector(bundle)
    assert described == "mnist test sample 0 (label 7)" and vector.prediction == 7
    with_test, without = tmp_path / "with.bin", tmp_path / "without.bin"
    res = run("flash-image", "--board", "ulx3s-85f", "--model", str(model), "--out", str(with_test))
    assert res.returncode == 0, res.stderr
    assert f"golden model's class 7, signature {vector.signature:#06x}" in res.stdout
    image = parse_image(with_test.read_bytes(), geom)
    assert image.expect == expect_word(vector.signature) and image.steps == vector.steps
    assert image.writes == config_writes_for(bundle, geom)
    res = run("flash-image", "--board", "ulx3s-85f", "--model", str(model), "--out", str(without),
              "--no-self-test")
    assert res.returncode == 0 and "no self-test" in res.stdout
    bare = parse_image(without.read_bytes(), geom)
    assert bare.expect is None and bare.writes == image.writes
    assert len(with_test.read_bytes()) - len(without.read_bytes()) == len(vector.commands(geom))
    res = run("flash-image", "--board", "ulx3s-85f", "--model", str(model), "--out",
              str(tmp_path / "z.bin"), "--self-test-sample", "10000")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "10000 samples" in res.stderr
    assert not (tmp_path / "z.bin").exists()
