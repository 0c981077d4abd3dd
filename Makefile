# Two commands do all set-up on a fresh machine (see README.md):
#   make demo   the main job, end to end on embedded data: synth, prepare (prints the store), gallery, train,
#               evaluate, export, serve (SERVE=0 stops before serving, for scripted use)
#   make test   lint + the test suite (what CI runs; installs Debian's chromium for the browser test)
# Each creates the virtual environment, or refreshes it when pyproject.toml changed. And with real data:
#   make real CATEGORIES="cat dog paint_can" [BASE_URL=http://127.0.0.1:8765/] [BUDGET=15m]
#               Google's files of those categories to a served model within BUDGET (`doodle quickstart`;
#               "_" stands for a space in a name). Run again, it reuses what it built.
# `make demo` may be run again, or after Ctrl+C: it reuses its finished run, resumes an interrupted
# one, and replaces one made with other DEMO_TRAIN settings, saying which. `make clean` removes the
# demo and the caches (not .venv, nor the real data); `make distclean` removes those too.

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
DEMO_STAMP := $(DEMO)/run/.make-demo-train
# make real: the categories (required), a mirror, the time budget, drawings per category, the folder
CATEGORIES ?=
BASE_URL ?=
BUDGET ?= 15m
PER_CLASS ?= 2000
REAL ?= real

.PHONY: demo demo-train real test lint bench bench-serve clean distclean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/doodle synth --out $(DEMO)/synth --per-class 200
	$(BIN)/doodle prepare $(DEMO)/synth --out $(DEMO)/store --overwrite
	$(BIN)/doodle render $(DEMO)/store --encoding order-speed-accel-time --size 96 --n 16 --out $(DEMO)/gallery.png
	@echo "gallery of the prepared drawings: $(DEMO)/gallery.png"
	@$(MAKE) --no-print-directory demo-train
	$(BIN)/doodle evaluate $(DEMO)/run --data $(DEMO)/store/val --out $(DEMO)/report
	$(BIN)/doodle export $(DEMO)/run --out $(DEMO)/export --check-data $(DEMO)/synth
	@if [ "$(SERVE)" != "0" ]; then $(BIN)/doodle serve $(DEMO)/export --port $(PORT); \
	else echo "SERVE=0: not serving; run: $(BIN)/doodle serve $(DEMO)/export  (then open http://127.0.0.1:$(PORT)/)"; fi

# The demo's run: reused when finished, resumed when interrupted (Ctrl+C), replaced when it was made
# with other DEMO_TRAIN settings (the stamp file records them).
demo-train: $(BIN)/.installed
	@if [ -f $(DEMO)/run/summary.json ] && [ "$$(cat $(DEMO_STAMP) 2>/dev/null)" = "$(DEMO_TRAIN)" ]; then \
	  echo "reusing the finished demo run $(DEMO)/run (make clean, then make demo, trains it afresh)"; \
	elif [ -f $(DEMO)/run/last.pt ] && [ "$$(cat $(DEMO_STAMP) 2>/dev/null)" = "$(DEMO_TRAIN)" ]; then \
	  echo "resuming the interrupted demo run $(DEMO)/run"; \
	  $(BIN)/doodle train --resume $(DEMO)/run; \
	else \
	  if [ -d $(DEMO)/run ]; then echo "replacing the demo run $(DEMO)/run (not finished, or other settings)"; fi; \
	  rm -rf $(DEMO)/run && mkdir -p $(DEMO)/run && echo "$(DEMO_TRAIN)" > $(DEMO_STAMP) && \
	  $(BIN)/doodle train --config configs/cpu.yaml --data $(DEMO)/store --out $(DEMO)/run $(DEMO_TRAIN); \
	fi

real: $(BIN)/.installed
	@if [ -z "$(strip $(CATEGORIES))" ]; then \
	  echo 'make real needs CATEGORIES, e.g. make real CATEGORIES="cat dog paint_can" ("_" for a space)'; exit 2; fi
	$(BIN)/doodle quickstart --categories $(CATEGORIES) --out $(REAL) --time-budget $(BUDGET) \
	  --per-class $(PER_CLASS) --port $(PORT) $(if $(BASE_URL),--base-url $(BASE_URL)) \
	  $(if $(filter 0,$(SERVE)),--no-serve)

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
	rm -rf $(DEMO) .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV) $(REAL)
