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

.PHONY: venv data browser demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,hub,serve,onnx]"
	touch $(STAMP)

data: venv
	$(BIN)/camtl data fetch

demo: data
	$(BIN)/camtl train $(CONFIG) --overwrite

# The HTML report's browser test needs headless Chromium: Debian's package where we are root
# and it is missing (elsewhere the test says it skipped, and why).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	    >/dev/null; } || echo "note: no chromium; the browser test of the HTML report will skip"

test: data browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests bench experiments
	$(BIN)/ruff format --check src tests bench experiments

clean:
	rm -rf $(VENV) runs
