# One word per habit; CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL := fal-ai/kling-video/v3/pro/text-to-video
PROMPT := A golden retriever running on a beach at sunset

.PHONY: install demo down test load lint services dashboard

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The main job: the whole stack on this machine, one real video out of it.
demo: install
	$(BIN)/naive local up
	$(BIN)/naive video generate --model $(MODEL) "$(PROMPT)" --duration 5 --wait \
		--output var/golden-retriever.mp4
	@echo "naive is in $(BIN): source $(BIN)/activate to run the commands above (or $(BIN)/naive)"

down: install
	$(BIN)/naive local down

# PostgreSQL and Redis for the tests, started if they are not running; promtool and
# Prometheus for the alert and scrape tests.
services:
	bash scripts/start-services.sh
	bash scripts/install-prometheus.sh

# The load test runs with 200 jobs here to keep CI short; `make load` runs the 1,000.
test: install services
	LOAD_JOBS=200 $(BIN)/pytest

load: install services
	LOAD_JOBS=1000 $(BIN)/pytest tests/test_load.py -s

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The Grafana dashboard is code (deploy/grafana/dashboard.py); its JSON is checked in.
dashboard: install
	$(BIN)/python deploy/grafana/dashboard.py
