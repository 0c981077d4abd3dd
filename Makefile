# Two commands do all set-up on a fresh machine (see README.md):
#   make demo   the main job, end to end on embedded data (synth, prepare, summary, gallery)
#   make test   lint + the test suite (what CI runs)
# Each creates the virtual environment, or refreshes it when pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: demo test lint bench clean

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

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/pytest -n 2 -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/prepare_bench.py
	$(BIN)/python benchmarks/simplify_match.py
	$(BIN)/python benchmarks/render_bench.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
