# The two quick-start commands: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test dev lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,bench,video]'
	touch $(STAMP)

## Start the embedded service, submit a generated MP4, print its results.
demo: $(STAMP)
	$(VENV)/bin/videoq demo

## The embedded service on http://127.0.0.1:8000 until Ctrl-C.
dev: $(STAMP)
	$(VENV)/bin/videoq dev

## Lint, type-check and run every test against real RabbitMQ, PostgreSQL and S3.
test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy
