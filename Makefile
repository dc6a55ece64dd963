# The two commands of the README. Both install what they need first.
PYTHON ?= python3

.PHONY: install run test lint services bench

install:
	$(PYTHON) -m pip install -q -e ".[dev]"

# Main job: the whole study on the embedded default (no network, cluster or GPU).
run: install
	debiaskd run

# Tests: start the services the suite uses (PostgreSQL where installed), then pytest.
test: install services
	$(PYTHON) -m pytest

services:
	@if command -v pg_ctlcluster >/dev/null 2>&1; then \
		pg_ctlcluster 15 main start 2>/dev/null || pg_ctlcluster 15 main status >/dev/null 2>&1 || \
		echo "PostgreSQL could not start: its tests will skip"; \
	else echo "PostgreSQL not installed: its tests will skip"; fi

lint:
	ruff check .

bench: install
	$(PYTHON) benchmarks/bench.py --json benchmarks/results.json
