# The two set-up commands: `make demo` and `make test` (README). Each creates
# .venv and installs what it needs on a fresh machine with Python 3.11+: every
# package at the version and hash the lock files name (requirements/*.txt,
# written by `make lock`), with nothing but pip, so an operator gets the
# versions the tests passed with. A changed lock file reinstalls.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
LOCK := requirements/base.txt
TEST_LOCK := requirements/test.txt

.PHONY: demo test bench lint lock soak clean

# The lock pins pip, setuptools and wheel too: the project itself is built with
# those (--no-build-isolation), not with whatever is newest that day. `pip check`
# catches a dependency added to pyproject.toml but not yet locked. (-qq: errors
# only; setuptools warns about every editable install.)
$(STAMP): $(LOCK) pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(PIP) install -q --require-hashes -r $(LOCK)
	$(PIP) install -qq --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $(STAMP)

$(TEST_STAMP): $(TEST_LOCK) $(STAMP)
	$(PIP) install -q --require-hashes -r $(TEST_LOCK)
	$(PIP) check
	touch $(TEST_STAMP)

demo: $(STAMP)
	ARBOPS_DATA_DIR=$${ARBOPS_DATA_DIR:-.arbops/demo} $(BIN)/arbops demo $(ARGS)

# Two workers, a file each at a time (module fixtures stay in one process): most of
# the suite waits on subprocesses, sockets and fsyncs, so two cores run it in about
# half the time. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
test: $(TEST_STAMP)
	bash scripts/test-services.sh
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.kill
	$(BIN)/python -m benchmarks.venues
	$(BIN)/python -m benchmarks.streams
	$(BIN)/python -m benchmarks.telegram
	$(BIN)/python -m benchmarks.charts

# mypy checks what [tool.mypy] in pyproject.toml names (bot, core, guards).
lint: $(TEST_STAMP)
	$(BIN)/ruff check bot core guards tests
	$(BIN)/mypy

# Refresh the lock files from pyproject.toml: every package to its newest allowed
# release, or only some (`make lock UPGRADE="ccxt aiogram"`). Then `make test`.
lock:
	PY=$(PY) bash scripts/lock.sh $(UPGRADE)

clean:
	rm -rf $(VENV) .arbops

# The crash soak: 50 seeded kill -9 points per seed on the data clock (kills too) and
# 20 on the wall clock; `make test` runs 10 on the data clock and 1 on the wall clock.
soak: $(TEST_STAMP)
	ARBOPS_SOAK_CRASHES=$${ARBOPS_SOAK_CRASHES:-50} \
	ARBOPS_CRASH_SEEDS=$${ARBOPS_CRASH_SEEDS:-20261125,7,1234} ARBOPS_CRASH_KILLS=1 \
	ARBOPS_SOAK_WALL_CRASHES=$${ARBOPS_SOAK_WALL_CRASHES:-20} \
	$(BIN)/python -m pytest -q -rA tests/venues/test_crash.py
