# accelpool: `make setup`, then `make test`. See README.md.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Parallel pytest workers; 2-core machines are the target.
JOBS   ?= auto
SIM    ?= verilator
export SIM

.PHONY: setup test regress mutation verilog sim bench clean help

help:
	@echo "make setup    virtual environment, pinned dependencies, simulators"
	@echo "make test     the test suite (amaranth.sim and cocotb on Verilator and Icarus)"
	@echo "make regress  the test suite plus long regressions (marked slow), then make mutation"
	@echo "make mutation mutation score of the ISA, cost formulas and golden arithmetic [MUTATION_MODULES=...]"
	@echo "make verilog  Verilog for every hardware block into sim_build/verilog/"
	@echo "make sim      the main job on the default model and pool"
	@echo "make bench    benchmarks: figures printed and written to bench/results/"
	@echo ""
	@echo "variables:"
	@echo "  MODEL=mixed          make sim: a built-in model or MODEL.onnx"
	@echo "  POOL=configs/default.toml  make sim: the pool config"
	@echo "  SCHEDULER=heft       make sim: greedy, heft, lookahead or search"
	@echo "  SIM=verilator        make sim and the tests: verilator or icarus"
	@echo "  WAVES=1              make sim: write a waveform of the RTL run (its path is printed)"
	@echo "  PYTEST_ARGS=...      make test / make regress: extra pytest arguments (e.g. -k soc)"
	@echo "  JOBS=auto            make test / make regress: parallel pytest workers"

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(STAMP)
	@command -v iverilog >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Icarus Verilog from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null; \
	  else \
	    echo "Icarus Verilog (iverilog) is missing and this is not root: run 'sudo apt-get install iverilog', then 'make setup' again" >&2; \
	    exit 1; \
	  fi; }
	@$(VPY) -m accelpool.tb.toolchain

test: setup
	$(VPY) -m pytest -n $(JOBS) -m "not slow" $(PYTEST_ARGS)

regress: setup
	$(VPY) -m pytest -n $(JOBS) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory mutation

# make mutation [MUTATION_MODULES="isa cost.csr"]: Cosmic Ray over each module against its
# own fast tests (bench/mutation.py); scores printed and written to bench/results/mutation.json.
# It mutates the sources in place: run no other tests in this checkout meanwhile.
MUTATION_STAMP := $(VENV)/.installed-mutation
$(MUTATION_STAMP): pyproject.toml | $(STAMP)
	$(VPY) -m pip install --quiet -e '.[test,mutation]'
	touch $@

mutation: setup $(MUTATION_STAMP)
	nice $(VPY) -m bench.mutation $(MUTATION_MODULES)

verilog: setup
	$(VPY) -m accelpool.tb.verilog --out sim_build/verilog --lint

# make sim [MODEL=mixed] [POOL=configs/default.toml] [SCHEDULER=heft] [SIM=verilator] [WAVES=1]
MODEL ?= mixed
POOL ?= configs/default.toml
SCHEDULER ?= heft
WAVES ?=
sim: setup
	$(VENV)/bin/accelpool sim $(MODEL) --pool $(POOL) --scheduler $(SCHEDULER) $(if $(SIM),--sim $(SIM)) $(if $(filter-out 0,$(WAVES)),--waves)

bench: setup
	$(VPY) -m bench

clean:
	rm -rf sim_build .pytest_cache
