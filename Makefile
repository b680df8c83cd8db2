# The README's entry points. Each sets up .venv first (a no-op when it is up to date).
# As many jobs at once as the machine has cores: more would share them, and the rules'
# cost-ordered priorities would no longer decide what runs first (issue #27).
CORES ?= $(shell nproc 2>/dev/null || echo 2)
VENV := .venv
SNAKEMAKE := $(VENV)/bin/snakemake

.PHONY: setup run test lint benchmark

setup:
	bin/setup
	bin/system-deps

# The default experiment (config/config.yaml); profiles/default is picked up automatically.
run: setup
	$(SNAKEMAKE) --cores $(CORES)

test: setup
	bin/system-deps --test
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(SNAKEMAKE) --lint
	$(VENV)/bin/snakefmt --check .

# Speed against the hand-written and naive loops, the default run, planning (~30 minutes); docs/performance.md.
benchmark: setup
	$(VENV)/bin/python benchmarks/run_benchmark.py $(BENCHMARK_ARGS)
