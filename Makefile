# Thin front end. Every target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-pubsub test test-fast check lint typecheck bench testbin image screenshots promql-results clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	@echo "Serving samples/hello-http on http://127.0.0.1:8080"
	@echo "  try:  curl -s http://127.0.0.1:8080/ -H 'content-type: application/json' -d '{\"name\": \"you\"}'"
	@echo "  stop: Ctrl-C"
	$(VENV)/bin/funcd run samples/hello-http --port 8080

demo-pubsub: install
	$(PY) testbin/build.py daprd
	$(PY) samples/pubsub-consumer/demo.py

test: install testbin image
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not e2e"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

bench: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/run.py

testbin: install
	$(PY) testbin/build.py

# The runtime image (funcd:<version>, funcd:latest) and the daprd image (funcd-daprd:<version>) as OCI
# archives in ~/.cache/funcd-testbin/images/, without a daemon: mmdebstrap + umoci (installed with apt-get).
image: install
	$(PY) testbin/build.py mmdebstrap node-runtime daprd
	$(PY) images/build.py

# docs/images/jaeger-*.png from the real stack: Jaeger with its UI (testbin/jaeger_ui.py builds the UI
# from a jaeger-ui source given in FUNCD_JAEGER_UI_SRC), daprd and funcd; headless Chromium from Debian.
screenshots: install
	$(PY) docs/screenshots/take.py $(SCREENSHOTS_ARGS)

# docs/observability.md's PromQL results (tables between its promql-results markers, and
# docs/images/promql-*.svg) from a real Prometheus (testbin `prometheus`) scraping two funcd functions.
promql-results: install
	$(PY) docs/screenshots/promql.py $(PROMQL_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
