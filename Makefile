# Shengtu: `make run` serves the embedded default; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench bench-quick chaos venv clean browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/shengtu migrate
	$(BIN)/shengtu demo
	$(BIN)/shengtu serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# The console tests drive Debian's chromium: installed here when missing and we can (root
# with apt-get). Without it they are skipped, or under CI=true they fail.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || \
	    echo "chromium could not be installed"; \
	  else echo "chromium is missing: the browser tests will not run"; fi; }
	@# Chinese text in the consoles' screenshots needs a CJK font (tofu boxes without one).
	@fc-list 2>/dev/null | grep -qi -e wqy -e "noto sans cjk" || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1 || \
	    echo "fonts-wqy-microhei could not be installed: screenshots will show boxes for Chinese"; \
	  fi; }
	@# The labels' tests read each stored picture with exiftool too, where it is.
	@command -v exiftool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libimage-exiftool-perl >/dev/null 2>&1 || \
	    echo "exiftool could not be installed: the labels are read back by Pillow only"; \
	  fi; }

# Four test processes on two cores: most tests wait on servers they started (tasks,
# sandboxes, kills, protocol doubles). With the nine protocols' suites, four took 10 m 15 s
# where three took 13 m 35 s (fewer tests then).
TEST_WORKERS ?= 4
test: lint browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

# Benchmarks, not tests: wrk (Debian's package) drives the server from its own process.
bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

# The reliability suite's long versions; prints a table of what it tried.
CHAOS_TESTS := tests/points/test_ledger_machine.py tests/e2e/test_chaos_kills.py \
	tests/points/test_submit_storm.py tests/e2e/test_upstream_faults.py tests/core/test_netguard.py \
	tests/storage/test_fetch_pinning.py tests/security/test_hostile_input.py \
	tests/security/test_auth_attacks.py tests/contract/test_schemathesis.py tests/e2e/test_pacing.py \
	tests/e2e/test_channel_failover.py tests/e2e/test_protocol_failover.py tests/tasks/test_partial_delivery.py
chaos: $(STAMP)
	rm -f .chaos-report.jsonl
	SHENGTU_CHAOS=1 SHENGTU_CHAOS_REPORT=$(CURDIR)/.chaos-report.jsonl $(BIN)/python -m pytest -q $(CHAOS_TESTS)
	@$(BIN)/python -m tests.chaos .chaos-report.jsonl

clean:
	rm -rf $(VENV) .bench-venv .pytest_cache .mypy_cache .ruff_cache
