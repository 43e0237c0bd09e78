# The few commands everyone runs. `make help` lists them.
.PHONY: help run test setup lint bench release

help:
	@echo "make run     serve ./project on http://127.0.0.1:4001 (installs core and adaptors on first start)"
	@echo "make test    install what the tests need, then run every test"
	@echo "make lint    cargo fmt --check and cargo clippy"
	@echo "make bench   release build, then the benchmarks (figures in the README)"

# What a fresh Debian machine with rustup, node and npm lacks for the tests.
setup:
	@command -v node >/dev/null || { echo "node is required (Node.js 18 or newer)"; exit 1; }
	@command -v npm >/dev/null || { echo "npm is required"; exit 1; }

run: setup
	HOST_URL=$${HOST_URL:-127.0.0.1} cargo run --bin microservice -- serve

test: setup
	cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

release:
	cargo build --release --bin microservice

bench: release
	python3 bench/latency.py
