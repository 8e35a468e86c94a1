# One entry point per stage of the flow. Every target creates the virtual environment first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BSNN   := $(VENV)/bin/bsnn
STAMP  := $(VENV)/.installed
MODEL  ?= models/mnist
OUT    ?= build/verilog
SIM    ?= verilator
# FPGA board: icebreaker, ulx3s-85f, ulx3s-45f, ulx3s-25f (hdl/boards/$(BOARD).toml)
BOARD  ?= icebreaker
# A hardware TOML for a variant of the board's core (default: hdl/boards/$(BOARD).toml), e.g.
# HW=hdl/boards/ulx3s-85f-parallel.toml, the parallel core (docs/fpga.md)
HW     ?=
# The bitstream build `make weights` patches (built by `make bitstream BOARD=... MODEL=...`)
BUILD  ?= build/bitstream/$(BOARD)-default
# Extra pytest arguments, e.g. make test PYTEST_ARGS="-k golden"
PYTEST_ARGS ?=

# AGMM ablation on the convolutional network (configs/agmm_conv.toml; docs/agmm.md section 6)
ABLATION_SEEDS ?= 0 1 2 3
ABLATION_RUNS  ?= runs/agmm_conv

.PHONY: help venv demo test verilog sim eval lint formal bench nir-demo ssr-sweep agmm-conv-ablation clean

help:
	@echo "make demo      Verilog for $(MODEL), then RTL vs golden model on MNIST test images"
	@echo "make test      the whole test suite (golden model, bundle, hardware units, cocotb on both simulators)"
	@echo "make verilog   Verilog + memory images + manifest into $(OUT)"
	@echo "make sim       cocotb regression: random bundles, RTL vs golden model, Verilator and Icarus"
	@echo "make eval      accuracy of $(MODEL) on MNIST with the golden model (JSON in build/eval.json)"
	@echo "make lint      verilator --lint-only -Wall on the generated Verilog"
	@echo "make bitstream BOARD=icebreaker|ulx3s-85f MODEL=...  board top -> bitstream (YoWASP), report in docs/fpga"
	@echo "make weights   BOARD=... MODEL=...  patch MODEL into the $(BUILD) bitstream (no place-and-route)"
	@echo "make flash-image BOARD=... MODEL=... the model's SPI flash image (booted at power-up; docs/board.md)"
	@echo "make core-speed BOARD=... MODEL=... core cycles vs the event bound on 100 MNIST test images"
	@echo "make host-link BOARD=... MODEL=...  UART bytes per MNIST inference and the link's inferences/s"
	@echo "make compact CHECKPOINT=... TO=...  a checkpoint as sign bits, small enough to commit (exports the same bundle)"
	@echo "make formal    bounded formal checks (SymbiYosys + z3): stream rules, spike queue"
	@echo "make bench     simulated cycles/s: compiled Verilator harness vs cocotb on Verilator and Icarus"
	@echo "make nir-demo  snnTorch -> NIR -> bundle, accuracy before and after"
	@echo "make ssr-sweep accuracy vs firing vs cycles over the M-SSR / F-SSR / v_hat strengths (long)"
	@echo "make agmm-conv-ablation  AGMM gradient / none / forward on a small conv BSNN, seeds $(ABLATION_SEEDS) (long)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# -qq: an editable install of a package-dir layout makes setuptools print an informational
	@# note ("Editable installation ... folders with the same name") that does not apply here;
	@# real build warnings are checked on the wheel by .ci/install_check.sh.
	$(PY) -m pip install -qq -e '.[fpga,test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BSNN) verilog --model $(MODEL) --out $(OUT) --vectors 10
	$(BSNN) eval --model $(MODEL) --dataset mnist --split test --limit 20 --engine rtl --simulator $(SIM) --json build/demo.json

test: $(STAMP)
	$(PY) -m pytest -q -rs -n 2 --durations=25 $(PYTEST_ARGS)

verilog: $(STAMP)
	$(BSNN) verilog --model $(MODEL) --out $(OUT) --vectors 10

sim: $(STAMP)
	$(BSNN) sim $(if $(CASES),--cases $(CASES))

eval: $(STAMP)
	$(BSNN) eval --model $(MODEL) --dataset mnist --split test --json build/eval.json

lint: verilog
	$(BSNN) lint $(OUT)

formal: $(STAMP)
	$(PY) -m pytest -q tests/formal

bench: $(STAMP)
	$(PY) -m bsnn.bench.sim_speed --model $(MODEL)

ssr-sweep: $(STAMP)
	$(BSNN) sweep --config configs/ssr_mnist.toml --out docs/ssr_mnist

agmm-conv-ablation: $(STAMP)
	$(PY) -m bsnn.training.ablation --config configs/agmm_conv.toml --seeds $(ABLATION_SEEDS) \
		--runs-dir $(ABLATION_RUNS) --threads 1 --gates 500 --target 0.90 --out docs/agmm_conv_ablation

nir-demo: $(STAMP)
	$(PY) -m bsnn.nir_demo --out build/nir_demo

clean:
	rm -rf build sim_build .pytest_cache

# An export-only checkpoint, small enough to commit: make compact CHECKPOINT=runs/x/last.pt TO=models/checkpoints/x.pt
.PHONY: compact
compact: $(STAMP)
	$(BSNN) compact --checkpoint $(CHECKPOINT) --out $(TO)

.PHONY: bitstream weights core-speed host-link flash-image
bitstream: $(STAMP)
	$(BSNN) bitstream --board $(BOARD) --model $(MODEL) --report-dir docs/fpga $(if $(HW),--hw-config $(HW)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(SEED),--seed $(SEED)) $(if $(IMAGES),--throughput-images $(IMAGES)) $(if $(CLOCK_MHZ),--clock-mhz $(CLOCK_MHZ))

weights: $(STAMP)
	$(BSNN) weights --build $(BUILD) --model $(MODEL) --out $(BUILD)/patched-$(notdir $(MODEL)).$(if $(filter icebreaker,$(BOARD)),bin,bit)

core-speed: $(STAMP)
	$(PY) -m bsnn.bench.core_speed --model $(MODEL) --hw $(or $(HW),hdl/boards/$(BOARD).toml) --limit 100 --json build/bench/core_speed-$(notdir $(basename $(or $(HW),$(BOARD))))-$(notdir $(MODEL)).json

host-link: $(STAMP)
	$(PY) -m bsnn.bench.host_link --model $(MODEL) --board $(BOARD) --limit 1000 --json docs/results/host_link-$(BOARD)-$(notdir $(MODEL)).json

# The model image for the board's SPI flash, for the bitstream `make bitstream` builds of MODEL
# (FLASH_BUILD=build/bitstream/<board>-<model>: the key of that build instead); docs/board.md.
flash-image: $(STAMP)
	$(BSNN) flash-image --board $(BOARD) --model $(MODEL) $(if $(FLASH_BUILD),--build $(FLASH_BUILD))
