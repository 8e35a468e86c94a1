"""``nir export|import`` commands (registered into bsnn's parser by add_nir_parser)."""
import argparse

import nir
import numpy as np
import pytest

from bsnn.firmware_export.bundle import load_bundle, random_bundle, save_bundle
from bsnn.nir_interop import NIRImportError
from bsnn.nir_cli import add_nir_parser


def _run(argv):
    parser = argparse.ArgumentParser(prog="bsnn")
    add_nir_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_export_then_import_gives_the_same_bundle(tmp_path, capsys):
    bundle = random_bundle(np.random.default_rng(4))
    save_bundle(bundle, tmp_path / "model")
    assert _run(["nir", "export", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "m.nir")]) == 0
    assert _run(["nir", "import", "--nir", str(tmp_path / "m.nir"), "--out", str(tmp_path / "back")]) == 0
    assert load_bundle(tmp_path / "back").same_as(bundle)
    assert "bit-exact" in capsys.readouterr().out


def test_foreign_import_needs_time_steps_and_reports_the_mapping(tmp_path, capsys):
    n = 3
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=np.array([[1.0, -0.5], [0.2, 0.3], [-1.0, -1.0]]), bias=np.zeros(n)),
        nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n)))
    nir.write(tmp_path / "f.nir", graph)
    with pytest.raises(NIRImportError, match="time_steps is required"):
        _run(["nir", "import", "--nir", str(tmp_path / "f.nir"), "--out", str(tmp_path / "b")])
    assert _run(["nir", "import", "--nir", str(tmp_path / "f.nir"), "--out", str(tmp_path / "b"),
                 "--time-steps", "7"]) == 0
    bundle = load_bundle(tmp_path / "b")
    assert bundle.time_steps == 7 and bundle.layers[0].leak_v == 3        # 1 - 0.1 -> 0.875
    assert '"leak_v": 3' in capsys.readouterr().out


def test_a_convolutional_bundle_exports_and_imports(tmp_path, capsys):
    bundle = random_bundle(np.random.default_rng(11), spatial=True, input_polarity="channels")
    save_bundle(bundle, tmp_path / "model")
    assert _run(["nir", "export", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "m.nir")]) == 0
    assert _run(["nir", "import", str(tmp_path / "m.nir"), "--out", str(tmp_path / "back")]) == 0
    assert load_bundle(tmp_path / "back").same_as(bundle)
    assert _run(["nir", "import", str(tmp_path / "m.nir"), "--out", str(tmp_path / "again"), "--recompile",
                 "--input-polarity", "channels", "--v-width", str(bundle.v_width),
                 "--c-width", str(bundle.c_width), "--bias-width", str(bundle.bias_width),
                 "--max-input-events", str(bundle.max_input_events)]) == 0
    again = load_bundle(tmp_path / "again")
    assert again.input_polarity == "channels" and [a.kind for a in again.layers] == [a.kind for a in bundle.layers]
    assert '"kind": "conv2d"' in capsys.readouterr().out
