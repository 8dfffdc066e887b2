# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
STORE ?= lmdb://./damas-data
PORT ?= 8090

.PHONY: install run test browser bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/damas serve --store $(STORE) --port $(PORT)

test: install browser
	$(PY) -m pytest -n 2 --timeout 600 tests

# The dashboard's browser tests drive Debian's Chromium (Playwright cannot download one here).
browser:
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } \
	  || echo "no /usr/bin/chromium: the browser tests will be skipped"

bench: install
	$(PY) -m tests.benchmarks

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
