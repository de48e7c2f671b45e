# modelseal — the two commands: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/lock.txt pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test lint typecheck unit bench docs lock clean proto

$(STAMP): requirements/lock.txt pyproject.toml tools/system-deps.sh
	@bash tools/system-deps.sh
	@echo "==> setting up $(VENV) from requirements/lock.txt"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

demo: $(STAMP)
	@bash demo/demo.sh

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench demo tools
	$(BIN)/ruff check src tests bench demo tools

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/seal_open.py

# Regenerate the reference pages the tests compare with the code (docs/cli.md, docs/api/).
docs: $(STAMP)
	$(BIN)/python tools/gen_docs.py

# Regenerate the lock file after changing dependencies in pyproject.toml.
lock:
	@test -x $(VENV)-tools/bin/pip-compile || ($(PY) -m venv $(VENV)-tools && $(VENV)-tools/bin/pip install --quiet pip-tools)
	$(VENV)-tools/bin/pip-compile --quiet --extra test --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements/lock.txt pyproject.toml

clean:
	rm -rf $(VENV) $(VENV)-tools build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache

# Regenerate the gRPC modules of the KServe v2 API from src/modelseal/serving/kserve_v2.proto.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Isrc/modelseal/serving --python_out=src/modelseal/_generated \
		--pyi_out=src/modelseal/_generated src/modelseal/serving/kserve_v2.proto
