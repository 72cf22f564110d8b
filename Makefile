# Two commands on a fresh machine with Python 3.11:
#   make demo   set up .venv and run the tiny four-condition study (report: runs/demo/report.html)
#   make test   run the test suite (CPU only), the mutant check included
#   make organism the model organism: the tiny study's conditions x 2 seeds, base models scored by cloze,
#                 the positive control for the direction (report: runs/organism/report.html)
#   make mutants  only the science-critical mutants, with a table (tests/mutants/)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH_CPU := torch==2.13.0

.PHONY: demo organism robustness test test-fast mutants setup lint clean

setup: $(STAMP)

# pip's and setuptools' notices go to $(VENV)/install.log, shown only when an install fails.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (log: $(VENV)/install.log)"
	@( $(PY) -m pip install --quiet --upgrade pip && \
	   $(PY) -m pip install --quiet $(TORCH_CPU) && \
	   $(PY) -m pip install --quiet -e '.[dev]' ) > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/alignpt study run --recipe tiny_cpu --output-dir runs/demo
	@echo "report: runs/demo/report.html"

organism: $(STAMP)
	$(VENV)/bin/alignpt study run --recipe tiny_cpu_organism --output-dir runs/organism
	@echo "report: runs/organism/report.html"

robustness: $(STAMP)
	$(VENV)/bin/alignpt study run --recipe tiny_cpu_robustness --output-dir runs/robustness
	@echo "report: runs/robustness/report.html"

test: $(STAMP)
	$(PY) -m pytest -m "not gpu" -q

test-fast: $(STAMP)
	$(PY) -m pytest -m "not gpu and not slow" -q

mutants: $(STAMP)
	$(PY) -m tests.mutants.runner

clean:
	rm -rf runs/demo runs/smoke runs/organism
