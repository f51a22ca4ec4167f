# Vigie — the two commands that must always work on a fresh Debian machine:
#   make demo   runs the whole system locally
#   make test   lints, type-checks and runs the test-suite
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# make demo HTTP_PORT=27080 BROKER_PORT=27883 when 8080 / 1883 are taken.
HTTP_PORT ?= 8080
BROKER_PORT ?= 1883
# The pure core: no I/O, checked with mypy --strict.
STRICT_CORE := protocol dispatcher/alerting/escalation.py dispatcher/alerting/escalation_plan.py dispatcher/alerting/escalation_state.py dispatcher/alerting/escalation_view.py dispatcher/alerting/reconcile.py dispatcher/visits/timer.py dispatcher/visits/alert_device.py dispatcher/directory/routing.py dispatcher/directory/fallback.py dispatcher/directory/location.py dispatcher/directory/place_words.py dispatcher/alerting/ratelimit.py dispatcher/alerting/outage.py dispatcher/fleet/devicehealth.py device/gestures.py device/watchdog.py device/haptics.py dispatcher/web/stats_totals.py dispatcher/fleet/floodwatch.py dispatcher/directory/texts.py dispatcher/fleet/dynsec_commands.py dispatcher/alerting/broker_logs.py dispatcher/alerting/notification_logs.py dispatcher/alerting/alert_logs.py dispatcher/alerting/status_order.py dispatcher/web/console/coalesce.py dispatcher/web/console/frames.py dispatcher/live_alerts.py dispatcher/fleet/alert_takers.py dispatcher/alerting/alert_contexts.py dispatcher/alerting/recent_sends.py

.PHONY: test test-broker demo demo-device bench lint typecheck system-deps clean

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
	$(BIN)/mypy device dispatcher broker_config sandbox bench deploy/render_cluster_broker.py

test: system-deps $(STAMP) lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

# The broker suite (docs/broker-suite.md), against our own Mosquitto or, before going live, the
# operator's broker:  make test-broker VIGIE_TEST_BROKER=mqtts://host:8883 VIGIE_TEST_BROKER_CA_DIR=ca/
BROKER_SUITE := tests/broker_config/test_transport.py tests/broker_config/test_sessions.py \
	tests/broker_config/test_dispatcher_instances.py::test_two_instances_share_the_uplinks_without_kicking_each_other \
	tests/security/test_mqtt_share.py tests/security/test_mqtt_flood.py::test_oversized_packets_are_cut_by_the_broker
export VIGIE_TEST_BROKER VIGIE_TEST_BROKER_CA_DIR VIGIE_TEST_BROKER_SERVER_CA

test-broker: $(STAMP)
	$(BIN)/pytest $(BROKER_SUITE) $(PYTEST_ARGS)

demo: system-deps $(STAMP)
	$(BIN)/python -m sandbox.demo --http-port $(HTTP_PORT) --broker-port $(BROKER_PORT)

# A button pressed from the keyboard, against the running demo (second terminal).
demo-device: $(STAMP)
	@test -f var/demo/appareil/device.toml || { echo "make demo-device : lancez d'abord make demo (dans un autre terminal)" >&2; exit 2; }
	$(BIN)/vigie-device --simulate --config var/demo/appareil/device.toml

bench: system-deps $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
