# Set-up and the two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := samples/astronaut.mp4

.PHONY: install demo test bench sample check-wheel clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ffv restore $(SAMPLE) --overwrite
	$(VENV)/bin/ffv preview $(SAMPLE) -o samples/astronaut_preview --every 15
	@echo "Restored: samples/astronaut_restored.mp4   Before/after: samples/astronaut_preview/index.html"

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: $(STAMP)
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

sample: $(STAMP)
	$(PY) scripts/make_sample.py $(SAMPLE)

# The built wheel, installed with its dependencies (from PyPI) into a fresh environment, restores
# the sample from outside the checkout. Minutes and about 1 GB of downloads: not part of `test`.
check-wheel:
	scripts/check_wheel.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
