# Vigie — the two commands that must always work on a fresh Debian machine:
#   make demo   runs the whole system locally
#   make test   lints, type-checks and runs the test-suite
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The pure core: no I/O, checked with mypy --strict.
STRICT_CORE := protocol dispatcher/escalation.py dispatcher/escalation_plan.py dispatcher/visit_timer.py dispatcher/routing.py dispatcher/fallback.py dispatcher/location.py dispatcher/ratelimit.py dispatcher/devicehealth.py device/gestures.py device/watchdog.py device/haptics.py

.PHONY: test demo bench lint typecheck system-deps clean

# A venv is rebuilt whenever it is incomplete (a `python3 -m venv` interrupted,
# or run before python3-venv was installed, leaves a python without pip).
$(STAMP): pyproject.toml
	test -x $(BIN)/python -a -x $(BIN)/pip || { rm -rf $(VENV) && $(PY) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@./scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict $(wildcard $(STRICT_CORE))
	$(BIN)/mypy device dispatcher broker_config sandbox bench

test: system-deps $(STAMP) lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

demo: system-deps $(STAMP)
	$(BIN)/python -m sandbox.demo

bench: system-deps $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
