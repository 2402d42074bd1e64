# `make run` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test lint deps system-deps bench clean

$(VENV)/.stamp-deps: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

deps: $(VENV)/.stamp-deps

system-deps:
	./scripts/install-system-deps.sh

# The whole cluster (API server, controllers, DNS, two nodes in network namespaces) with the
# chapter's manifests applied; Ctrl-C removes every namespace, link and process it made.
run: system-deps deps
	$(VENV)/bin/svcnet up --data-dir ./svcnet-data $(addprefix -f ,$(wildcard examples/*.yaml))

test: system-deps deps
	$(PY) -m ruff check src tests bench
	$(PY) -m pytest -q -rs -p no:cacheprovider

lint: deps
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench || true

clean:
	rm -rf $(VENV) svcnet-data .pytest_cache .ruff_cache
