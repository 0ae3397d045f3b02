# launch-agent: the two commands of the README are `make demo` and `make test`.
# Everything they need is installed here: a virtualenv from pyproject.toml and the
# Kubernetes tools, built from pinned upstream Go modules into ~/.cache (see localenv/tools).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
BENCH_STAMP := $(VENV)/.bench-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: all venv tools image demo test test-unit lint bench reliability clean help

all: test

help:
	@echo "make demo   - bring up the local control plane and W&B emulator, install the chart, run the agent"
	@echo "make test   - install everything needed and run every test"
	@echo "make bench  - benchmarks against the official agent and the floor, printed as ratios (~24 min)"
	@echo "make image  - build the agent image (Docker or Podman; here Debian's buildah on a local base)"
	@echo "make reliability - the fault and security suites, then their figures"
	@echo "make lint   - ruff"

$(STAMP): pyproject.toml
	@echo ">> creating virtualenv $(VENV) and installing launch-agent[test]"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

tools: venv
	@$(PY) -m localenv build

# The agent image, tagged as the chart's default (agent.image:appVersion). TOOL=docker|podman|buildah.
TOOL ?= auto
image: venv
	@$(PY) -m localenv.images.project agent --tool $(TOOL) $(if $(IMAGE),--tag $(IMAGE))

lint: venv
	@$(BIN)/ruff check .

test: venv tools
	@$(BIN)/ruff check .
	@$(PY) -m pytest

demo: venv tools
	@$(PY) -m localenv.demo

$(BENCH_STAMP): $(STAMP)
	@echo ">> installing the benchmarks' extras (matplotlib)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@rm -f $(VENV)/.bench-*
	@touch $@

# BENCH_ARGS: e.g. "--preset full --update-readme" or "burst trickle"
bench: venv tools $(BENCH_STAMP)
	@$(PY) -m benchmarks $(BENCH_ARGS)

# Figures: each suite writes <results>/<name>.json (localenv.results, $LAUNCH_AGENT_RESULTS_DIR,
# default build/results); the report prints whatever is there.
reliability: venv tools
	@$(PY) -c 'from localenv import results; results.clear()'
	@$(PY) -m pytest -q tests/reliability $(wildcard tests/security); \
	  status=$$?; $(PY) -m localenv.results; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
