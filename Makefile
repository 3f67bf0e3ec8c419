# critbatch: one Makefile is the interface; CI and pre-commit only call it.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Extras the test environment needs: every optional feature, so every test runs: plot
# (matplotlib), testing (hypothesis), torch (backend), jax (bench peer), ray (cluster engine).
EXTRAS := test,plot,testing,torch,jax,ray
DOCS_STAMP := $(VENV)/.docs-installed
# The requirements of the extras named in $(1), one per line, read from pyproject.toml.
extra_requirements = $(PY) -c "import tomllib;d=tomllib.load(open('pyproject.toml','rb'))['project'];e=d['optional-dependencies'];print('\n'.join($(2)[r for x in '$(1)'.split(',') for r in e[x]]))"

.PHONY: help
help: ## Print the targets and what they do
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "maturin>=1.7,<2"
	$(PIP) install --quiet -r <($(call extra_requirements,$(EXTRAS),d['dependencies']+))
	touch $(STAMP)

$(DOCS_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -r <($(call extra_requirements,docs,))
	touch $(DOCS_STAMP)

.PHONY: install
install: $(STAMP) ## Create the virtual environment with every dependency and extra the tests need

.PHONY: build-dev
build-dev: install ## Build the extension (release profile: the tests run real sweeps) into the venv
	$(VENV)/bin/maturin develop --release --quiet

.PHONY: build-prod
build-prod: install ## Build an abi3 wheel into dist/ (one wheel for CPython >= 3.11)
	$(VENV)/bin/maturin build --release --out dist

.PHONY: format
format: install ## Format Rust and Python sources
	cargo fmt
	$(VENV)/bin/ruff format python tests benches examples
	$(VENV)/bin/ruff check --fix python tests benches examples

.PHONY: lint-python
lint-python: install ## ruff and mypy
	$(VENV)/bin/ruff check python tests benches examples
	$(VENV)/bin/mypy

.PHONY: lint-rust
lint-rust: ## rustfmt, clippy (pedantic, deny unwrap) and rustdoc
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	cargo doc --no-deps --quiet

.PHONY: lint
lint: build-dev ## What CI checks: ruff check and format, mypy strict, stubtest of _core, rustfmt, clippy, rustdoc
	$(VENV)/bin/ruff check python tests benches examples
	$(VENV)/bin/ruff format --check python tests benches examples
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest critbatch._core
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	cargo doc --no-deps --quiet

.PHONY: docs
docs: $(DOCS_STAMP) ## The documentation site into site/ (mkdocs; warnings are errors)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

.PHONY: typecheck
typecheck: build-dev ## mypy, and stubtest of the compiled module against _core.pyi
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest critbatch._core

.PHONY: test
test: build-dev ## cargo test, then the whole pytest suite against the installed build
	cargo test --quiet
	$(PY) -m pytest -q -p no:cacheprovider

.PHONY: test-slow
test-slow: build-dev ## The long statistical tests too
	$(PY) -m pytest -q -p no:cacheprovider -m ''

.PHONY: bench
bench: build-dev ## Time the core against its NumPy, JAX and torch peers and print the ratios
	$(PY) -m pytest benches --benchmark-enable -m '' -q -p no:cacheprovider --benchmark-columns=mean,stddev,rounds
	CRITBATCH_BENCH=full $(PY) benches/report.py

.PHONY: gpu-check
gpu-check: build-dev ## On a CUDA machine: Rust vs torch-on-GPU, the network sweeps, GPU throughput -> gpu-check.json
	$(PY) -m critbatch.torch.gpucheck --device $(or $(DEVICE),cuda) --out gpu-check.json

.PHONY: demo
demo: build-dev ## The main job on its embedded default: sweep, fit and report into demo-output/
	$(VENV)/bin/critbatch demo -o demo-output

.PHONY: clean
clean: ## Remove build products and the virtual environment
	cargo clean
	rm -rf $(VENV) dist demo-output site .pytest_cache .hypothesis

MUTANTS_DIR ?= /tmp/critbatch-mutants
.PHONY: mutants
mutants: build-dev ## Sampled mutation test of HEAD (package and core) in a git worktree -> mutants-*.json
	rm -rf $(MUTANTS_DIR) && git worktree prune && git worktree add --detach $(MUTANTS_DIR) HEAD
	cp python/critbatch/_core*.so $(MUTANTS_DIR)/python/critbatch/
	cd $(MUTANTS_DIR) && PYTHONPATH=$(MUTANTS_DIR)/python $(abspath $(PY)) benches/mutants.py python \
	  --total 100 --coverage $(MUTANTS_DIR)/mutcov.json --equivalent benches/mutants-equivalent.json \
	  --out $(CURDIR)/mutants-python.json
	cd $(MUTANTS_DIR) && CARGO_TARGET_DIR=$(MUTANTS_DIR)-target $(abspath $(PY)) benches/mutants.py rust \
	  --total 100 --equivalent benches/mutants-equivalent.json --out $(CURDIR)/mutants-rust.json
	git worktree remove --force $(MUTANTS_DIR)
