# Two entry points: `make report` (the main job) and `make test`. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: report test bench clean
unexport PYTHONDONTWRITEBYTECODE

# The studies and claims first, so the run's report.md includes the nudge section.
report: $(STAMP)
	$(BIN)/python -m harness study epsilon
	$(BIN)/python -m harness study cost
	$(BIN)/python -m harness claims
	$(BIN)/python -m harness run

# Two pytest-xdist workers (three measured no faster). Measured on this 2-core machine, a clean
# clone with a cold JAX compilation cache (a new machine), `.ci/run` in all: 5 min 2 s (pytest
# 279 s, 1,680 tests) on 2026-12-01 on an AVX-512 AMD EPYC, where the code before that day's
# changes took 4 min 26 s; 8 to 10 minutes on the slower machines of the days before.
# About 220 s of a cold run on those machines was JAX compiling one function per network shape.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Reinstall when the project metadata or the pins change. Without pip's bytecode step (--no-compile):
# Python writes a module's bytecode when it first imports it (so PYTHONDONTWRITEBYTECODE is not
# passed on), about 2,300 of the 11,500 modules the install brings. Measured on this machine: the
# install takes 32 s instead of 88 s, and the first import of torch, JAX and the rest 9 s more once.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[frameworks,test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) reports/latest .pytest_cache
