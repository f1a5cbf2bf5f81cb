# Set-up and the two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := samples/astronaut.mp4
# The demo: a small, damaged face (scripts/make_sample.py --clip small), super-resolved x4.
# --min-face 24 leaves out a ~17 px "face" the tiled search finds on the rocket behind her.
DEMO := samples/astronaut_small.mp4
DEMO_OPTIONS := --upscale 4 --min-face 24
# Footage of your own for a second panel of the README's picture: make readme-picture REAL=clip.mp4
# (the project's real test clips may not be redistributed, so the committed picture has none).
REAL ?=

.PHONY: install demo test bench sample readme-picture check-wheel clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ffv restore $(DEMO) $(DEMO_OPTIONS) --overwrite
	$(VENV)/bin/ffv preview $(DEMO) -o samples/astronaut_small_preview $(DEMO_OPTIONS) --every 20
	@echo "Restored: samples/astronaut_small_restored.mp4   Before/after: samples/astronaut_small_preview/index.html"

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: $(STAMP)
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

sample: $(STAMP)
	$(PY) scripts/make_sample.py $(SAMPLE)
	$(PY) scripts/make_sample.py $(DEMO) --clip small

# The README's picture, from `ffv preview` of the demo and of real footage: run it again when the
# shipped networks change.
readme-picture: $(STAMP)
	$(PY) scripts/readme_picture.py docs/readme_picture.png \
		--clip $(DEMO) --frame 50 --options "$(DEMO_OPTIONS)" --label "demo clip" \
		$(if $(REAL),--clip $(REAL) --frame 30 --options "--upscale 2" --label "real footage")

# The built wheel, installed with its dependencies (from PyPI) into a fresh environment, restores
# the sample from outside the checkout. Minutes and about 1 GB of downloads: not part of `test`.
check-wheel:
	scripts/check_wheel.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
