#!/usr/bin/env bash
# The package works installed, not only as a checkout (README, "Layout"): build a wheel, install it
# (not editable) into a fresh virtual environment, then run the main commands from another
# directory and check that they wrote only there (./build and the paths given) and nothing into
# the checkout or the installed package.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/bsnn-install-check.XXXXXX)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"

echo "== installed-package check in $work"
# The wheel is built from a clean copy of the committed tree (an in-tree build would write build/).
git -C "$repo" archive --format=tar --prefix=src/ HEAD | tar -x -C "$work"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip wheel --verbose --no-deps --wheel-dir "$work/wheel" "$work/src" > "$work/wheel.log" 2>&1
# No packaging warnings (license expression, package data, deprecated options): the build says none.
if grep -E "DeprecationWarning|SetuptoolsWarning|BuildBackendWarning" "$work/wheel.log"; then
    echo "the wheel build warns (above)"; exit 1
fi
"$work/venv/bin/python" -m pip install --quiet "$(ls "$work"/wheel/*.whl)[fpga]"
cd "$work"   # not the checkout: python -c puts the current directory first on sys.path
site="$("$work/venv/bin/python" -c 'import bsnn, pathlib; print(pathlib.Path(bsnn.__file__).parent)')"
case "$site" in "$repo"*) echo "bsnn was imported from the checkout ($site), not the wheel"; exit 1;; esac
# Package data ships in the wheel.
for f in firmware_export/c/bsnn_infer.h hdl/lint_waivers.vlt sim/cpp/harness.cpp sim/spi_flash_model.v \
         hdl/boards/icebreaker.toml; do
    test -f "$site/$f" || { echo "missing from the wheel: $f"; exit 1; }
done
installed_before="$(find "$site" -type f -not -name '*.pyc' | sort | md5sum)"

touch "$work/marker"
mkdir "$work/user"
cd "$work/user"
export PATH="$work/venv/bin:$PATH" BSNN_DATASETS="${BSNN_DATASETS:-$repo/../shared/datasets}"
unset BSNN_BUILD_DIR
model="$repo/models/default"
bsnn --help >/dev/null
bsnn verilog --model "$model" --out verilog --vectors 2
test -f verilog/bsnn_core.v && test -f verilog/model.h && test -f verilog/golden_vectors.jsonl
bsnn eval --model "$model" --dataset mnist --limit 3 --engine rtl --simulator verilator --json eval-verilator.json --quiet
bsnn eval --model "$model" --dataset mnist --limit 2 --engine rtl --simulator icarus --json eval-icarus.json --quiet
"$work/venv/bin/python" - <<'PY'
import json
for sim in ("verilator", "icarus"):
    report = json.load(open(f"eval-{sim}.json"))
    assert report["bit_exact"] is True, (sim, report)
PY
# The board flow from the wheel: its board TOMLs, the build plan and a flash image with its
# self-test (place and route itself runs in the suite: tests/hdl/test_hdl_board.py).
bsnn flash-image --board icebreaker --model "$model" --out flash.bin
test -s flash.bin
bsnn lint verilog

# Outputs only here: nothing new in the checkout, nothing written into the installed package.
changed="$(find "$repo" -path "$repo/.git" -prune -o -newer "$work/marker" -print | head -n 20)"
[ -z "$changed" ] || { echo "the commands wrote into the checkout:"; echo "$changed"; exit 1; }
[ "$installed_before" = "$(find "$site" -type f -not -name '*.pyc' | sort | md5sum)" ] || {
    echo "the commands wrote into the installed package $site"; exit 1; }
echo "installed-package check passed: $(ls "$work/user" | tr '\n' ' ')"
