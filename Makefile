# The two set-up commands: `make demo` and `make test` (README). Each creates
# .venv and installs what it needs on a fresh machine with Python 3.11+.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test bench lint soak clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test]'
	touch $(TEST_STAMP)

demo: $(STAMP)
	ARBOPS_DATA_DIR=$${ARBOPS_DATA_DIR:-.arbops/demo} $(BIN)/arbops demo $(ARGS)

test: $(TEST_STAMP)
	bash scripts/test-services.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.kill
	$(BIN)/python -m benchmarks.venues
	$(BIN)/python -m benchmarks.telegram

lint: $(TEST_STAMP)
	$(BIN)/ruff check bot core guards tests

clean:
	rm -rf $(VENV) .arbops

# 50+ seeded kill -9 crash points against the emulator (issue #4); `make test` runs 10.
soak: $(TEST_STAMP)
	ARBOPS_SOAK_CRASHES=$${ARBOPS_SOAK_CRASHES:-50} $(BIN)/python -m pytest -q tests/venues/test_crash.py
