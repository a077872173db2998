# Two commands for a newcomer:  `make demo`  and  `make test`.
# Both create or refresh .venv, install torch first, then camtl, then fetch the offline assets.
PYTHON ?= python3
VENV   ?= .venv
# The CPU build is on disk here; a GPU user passes their own, e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.camtl-installed
CONFIG ?= configs/demo.yaml
PYTEST_ARGS ?=

.PHONY: venv data demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,hub]"
	touch $(STAMP)

data: venv
	$(BIN)/camtl data fetch

demo: data
	$(BIN)/camtl train $(CONFIG) --overwrite

test: data
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) runs
