.PHONY: help install build quick demo test lint typecheck docs wheels benchmark bench-rust clean

help:  ## this list of targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install:  ## venv + dev dependencies + release build of the extension
	bash scripts/setup.sh

build:  ## rebuild the extension in place after a Rust change (maturin develop --release)
	VIRTUAL_ENV=$(CURDIR)/.venv PATH=$(CURDIR)/.venv/bin:$$PATH .venv/bin/maturin develop --release --quiet

quick: build lint  ## the inner loop (a few minutes): build in place, lints, the pytest suite; no wheels, no docs site
	.venv/bin/python -m pytest -q -x $(ARGS)

demo:  ## the main job: joblite on real-sized data, side by side with joblib
	bash scripts/demo.sh

test:  ## everything CI runs: lints, types, cargo test, pytest, docs, wheels on 3.9 and 3.13
	bash scripts/test.sh

lint:  ## cargo fmt/clippy (with and without the python feature), ruff check/format, import layers
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	.venv/bin/ruff check python tests benches examples scripts
	.venv/bin/ruff format --check python tests benches examples scripts
	.venv/bin/lint-imports

typecheck: install  ## mypy on the package, mypy --strict on a user script, stubtest of _core.pyi
	bash scripts/typecheck.sh

docs: install  ## the docs site into site/ (mkdocs --strict: a broken reference fails)
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir site

wheels:  ## dist/: manylinux2014 wheels for CPython 3.9-3.13 and the sdist
	bash scripts/wheels.sh

benchmark: install  ## every benchmark in benches/, joblite next to joblib in one run; writes docs/benchmarks.md and README's table
	mkdir -p .benchmarks
	.venv/bin/python -m pytest benches --benchmark-enable --benchmark-only -p no:randomly \
		--benchmark-json=.benchmarks/latest.json $(ARGS)
	.venv/bin/python scripts/bench_table.py .benchmarks/latest.json docs/benchmarks.md README.md

bench-rust:  ## criterion benches of the Rust core
	cargo bench

clean:  ## remove build outputs, the venv, dist/, site/ and benchmark results
	rm -rf target .venv dist site .benchmarks
