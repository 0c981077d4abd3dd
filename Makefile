# Two commands do all set-up on a fresh machine (see README.md):
#   make demo   the main job, end to end on embedded data: synth, prepare, summary, gallery, train,
#               evaluate, export, serve (SERVE=0 stops before serving, for scripted use)
#   make test   lint + the test suite (what CI runs; installs Debian's chromium for the browser test)
# Each creates the virtual environment, or refreshes it when pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo
SERVE ?= 1
PORT ?= 8000
# a few minutes on a 2-core CPU; truncated drawings in training so the app guesses early
DEMO_TRAIN ?= epochs=5 augment.truncate=0.5 augment.truncate_min=0.25
CHROMIUM ?= /usr/bin/chromium
RUN ?= $(DEMO)/run
STORE ?= $(DEMO)/store

.PHONY: demo test lint bench bench-serve clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/doodle synth --out $(DEMO)/synth --per-class 200
	$(BIN)/doodle prepare $(DEMO)/synth --out $(DEMO)/store --overwrite
	$(BIN)/doodle info $(DEMO)/store
	$(BIN)/doodle render $(DEMO)/store --encoding order-speed-accel-time --size 96 --n 16 --out $(DEMO)/gallery.png
	@echo "gallery of the prepared drawings: $(DEMO)/gallery.png"
	$(BIN)/doodle train --config configs/cpu.yaml --data $(DEMO)/store --out $(DEMO)/run $(DEMO_TRAIN)
	$(BIN)/doodle evaluate $(DEMO)/run --data $(DEMO)/store/val --out $(DEMO)/report
	$(BIN)/doodle export $(DEMO)/run --out $(DEMO)/export --check-data $(DEMO)/synth
	@if [ "$(SERVE)" != "0" ]; then $(BIN)/doodle serve $(DEMO)/export --port $(PORT); \
	else echo "SERVE=0: not serving; run: $(BIN)/doodle serve $(DEMO)/export  (then open http://127.0.0.1:$(PORT)/)"; fi

# the browser test drives Debian's chromium with Playwright (a Playwright browser download is not possible)
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

test: lint $(CHROMIUM)
	$(BIN)/pytest -n 2 -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/prepare_bench.py
	$(BIN)/python benchmarks/simplify_match.py
	$(BIN)/python benchmarks/render_bench.py

# the live app's figures for a trained run (default: the demo's): load benchmark and early guessing
bench-serve: $(BIN)/.installed
	$(BIN)/python benchmarks/serve_bench.py $(RUN) --val $(STORE)/val
	$(BIN)/python benchmarks/early_guess.py $(RUN) --data $(STORE) --out $(DEMO)/early-guessing.png

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
