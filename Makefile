# Run `make help` for the list of targets.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

.PHONY: install
install: .venv/.installed node_modules/.installed ## Create .venv with the package and dev tools, and the npm tools (anvil, solc)

.venv/.installed: pyproject.toml
	test -d .venv || python3 -m venv .venv
	$(PIP) install -q -U pip
	$(PIP) install -q -e '.[dev,embedded]'
	touch $@

# npm install (not npm ci): npm 11 leaves other platforms' optional anvil binaries out of the
# lock, which npm ci then refuses; npm install still installs the locked versions.
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: test
test: install ## Run the whole test suite (unit, integration, e2e)
	$(PY) -m pytest -n 2 --dist loadfile

.PHONY: test-unit
test-unit: install ## Run only the pure unit tests
	$(PY) -m pytest -m unit

.PHONY: lint
lint: ## ruff (lint + format check) and mypy strict
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

.PHONY: fmt
fmt: ## Format and autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

.PHONY: contracts
contracts: ## Rebuild the devnet contract artifacts with the npm solc
	$(PY) -m solver.devnet.build

.PHONY: contracts-check
contracts-check: ## Check the committed artifacts match the Solidity sources
	$(PY) -m solver.devnet.build --check

.PHONY: migrate
migrate: ## Create/upgrade the database named by DATABASE_URL
	$(PY) -m solver migrate

.PHONY: dev
dev: install ## Run the whole system on embedded defaults (solver dev)
	.venv/bin/solver dev

.PHONY: api
api: ## Run the API (settings from env and config/local.toml)
	$(PY) -m solver api

.PHONY: bench
bench: ## Run the benchmarks (see bench/README.md)
	$(PY) bench/run_all.py
