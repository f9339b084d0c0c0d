.PHONY: install demo test lint benchmark bench-rust clean

install:  ## venv + dev dependencies + release build of the extension
	bash scripts/setup.sh

demo:  ## the main job: joblite on real-sized data, side by side with joblib
	bash scripts/demo.sh

test:  ## everything CI runs: lints, cargo test, pytest
	bash scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	.venv/bin/ruff check python tests benches examples
	.venv/bin/ruff format --check python tests benches examples
	.venv/bin/lint-imports

benchmark: install  ## pytest-benchmark, joblite next to joblib in one run
	.venv/bin/python -m pytest benches --benchmark-enable --benchmark-only -p no:randomly $(ARGS)

bench-rust:  ## criterion benches of the Rust core
	cargo bench

clean:
	rm -rf target .venv
