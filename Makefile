# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# what serving needs only (the core and the server extra): make run installs no test tool
SERVE_STAMP := $(VENV)/.serve-stamp
STORE ?= lmdb://./damas-data
PORT ?= 8090

.PHONY: install system-deps run test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

$(SERVE_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[server]'
	touch $(SERVE_STAMP)

run: $(SERVE_STAMP)
	$(VENV)/bin/damas serve --store $(STORE) --port $(PORT)

test: system-deps install
	$(PY) -m pytest -n 2 --timeout 600 tests

# rsync, sshd, ssh and Chromium, which the tests run for real: installed when missing
# (as root with apt-get), else make stops with the command to run
system-deps:
	@bash scripts/system-deps.sh

bench: install
	$(PY) -m tests.benchmarks

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
