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
# test processes (pytest-xdist): one per core by default; TEST_WORKERS=0 runs the suite in one
TEST_WORKERS ?= auto

.PHONY: venv data data-mpnet browser demo test lint dist dist-check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,hub,serve,onnx]"
	touch $(STAMP)

data: venv
	$(BIN)/camtl data fetch

# the second real encoder (404 MB), for the MPNet integration test
data-mpnet: venv
	$(BIN)/camtl data fetch mpnet

demo: data
	$(BIN)/camtl train $(CONFIG) --overwrite

# The HTML report's browser test needs headless Chromium: Debian's package where we are root
# and it is missing (elsewhere the test says it skipped, and why).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	    >/dev/null; } || echo "note: no chromium; the browser test of the HTML report will skip"

test: data data-mpnet browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests bench experiments
	$(BIN)/ruff format --check src tests bench experiments
	$(BIN)/mypy src

# A wheel and an sdist in dist/, checked by twine.
dist: venv
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >/dev/null
	$(BIN)/twine check --strict dist/*

# The wheel installed in a fresh virtual environment runs `camtl --help` and a few steps of
# the demo config. The new venv borrows the dependencies of $(VENV) through a .pth file
# (a second torch install would take minutes), so what it tests is the wheel itself: its
# modules, package data and entry point, with `pip check` on its declared dependencies.
WHEEL_VENV ?= /tmp/camtl-wheel-venv
dist-check: dist data
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(BIN)/python -c "import site; print(site.getsitepackages()[0])" > \
	  "$$($(WHEEL_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/camtl-deps.pth"
	$(WHEEL_VENV)/bin/python -m pip uninstall -q -y setuptools  # the borrowed one is newer
	$(WHEEL_VENV)/bin/python -m pip install -q --no-deps dist/camtl-*.whl
	$(WHEEL_VENV)/bin/python -m pip check
	cd $(WHEEL_VENV) && bin/python -c "import camtl, sys; assert 'camtl-wheel-venv' in camtl.__file__, camtl.__file__"
	$(WHEEL_VENV)/bin/camtl --help >/dev/null
	$(WHEEL_VENV)/bin/camtl train $(CONFIG) --output-dir $(WHEEL_VENV)/run --overwrite \
	  --set training.max_steps=3 --set training.eval_every=3 --set training.log_every=1
	test -f $(WHEEL_VENV)/run/report.json
	rm -rf $(WHEEL_VENV)

clean:
	rm -rf $(VENV) runs dist
