# The two commands of the README. Both install what they need first, from the lock.
PYTHON ?= python3
# constraints.txt is the lock: every install takes its exact versions (direct and transitive).
PIP_INSTALL = $(PYTHON) -m pip install -q -c constraints.txt

.PHONY: install run test lint services browser bench lock

install:
	$(PIP_INSTALL) -e ".[dev]"

# Main job: the whole study on the embedded default (no network, cluster or GPU).
run: install
	$(PYTHON) -m debiaskd run

# Tests: start the services the suite uses (PostgreSQL where installed), then pytest.
test: install services browser
	$(PYTHON) -m pytest

services:
	@if command -v pg_ctlcluster >/dev/null 2>&1; then \
		pg_ctlcluster 15 main start 2>/dev/null || pg_ctlcluster 15 main status >/dev/null 2>&1 || \
		echo "PostgreSQL could not start: its tests will skip"; \
	else echo "PostgreSQL not installed: its tests will skip"; fi

# Debian's Chromium and its driver for tests/test_browser.py (which fails, not skips, without them):
# installed only where one is missing (as root, through apt); no apt there is an error, not a skip.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (tests/test_browser.py)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
			>/dev/null; } || { echo "make browser: apt-get could not install chromium chromium-driver" >&2; exit 1; }; \
	else echo "make browser: /usr/bin/chromium or /usr/bin/chromedriver missing and no apt-get:" \
		"install Debian's chromium and chromium-driver" >&2; exit 1; fi

lint:
	$(PYTHON) -m ruff check .

bench: install
	$(PYTHON) benchmarks/bench.py --json benchmarks/results.json

# Refresh the lock after changing pyproject.toml: resolve in a brand-new venv without the old
# lock, then write the installed closure to constraints.txt (tests/test_pins.py checks it).
LOCK_VENV ?= .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[dev]"
	$(LOCK_VENV)/bin/python tests/test_pins.py > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)
