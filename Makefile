# The two entry points of the README. Both set up .venv first (a no-op when up to date).
CORES ?= 8
VENV := .venv

.PHONY: setup run test report lint benchmark

setup:
	bin/setup

# Run the default experiment (config/config.yaml); profiles/default is picked up automatically.
run: setup
	$(VENV)/bin/snakemake --cores $(CORES)

test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check .
