# The few commands everyone runs. `make help` lists them.
.PHONY: help run test test-stress setup plugins lint bench release image

help:
	@echo "make run     serve ./project on http://127.0.0.1:4001 (installs core and adaptors on first start)"
	@echo "make test    install what the tests need, then run every test"
	@echo "make test-stress  make test three times in a row beside stress-ng on every core (RUNS=, STRESS_WORKERS=)"
	@echo "make lint    cargo fmt --check and cargo clippy"
	@echo "make bench   release builds, then every benchmark (figures in the README)"
	@echo "make image   docker build -t openfn-microservice . (needs a Docker engine; see Deploy in the README)"

# What a fresh Debian machine with rustup, node, npm and python3 lacks: the wasm
# target for plugins, Debian's Chromium for the dashboard's browser test, and
# Debian's PostgreSQL binaries (the tests start throwaway clusters of their own;
# no server is configured or started here).
# (npm packages are installed by the service itself; the browser test runs
# `npm ci` in tests/browser when its node_modules is missing.)
setup:
	@command -v node >/dev/null || { echo "node is required (Node.js 18 or newer; 20 for the browser test)"; exit 1; }
	@command -v npm >/dev/null || { echo "npm is required"; exit 1; }
	@python3 -c 'import venv' 2>/dev/null || { echo "python3 with venv is required (the Python plugin template's build installs componentize-py into a venv, the OpenAPI test schemathesis)"; exit 1; }
	rustup target add wasm32-wasip2
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		echo "installing Debian's chromium for the dashboard's browser test"; \
		$$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		echo "installing Debian's postgresql for the PostgreSQL tests"; \
		$$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends postgresql; \
	fi

# The first-party plugins, built from source into the default project.
plugins: setup
	cargo build --release --target wasm32-wasip2 --target-dir plugins/target --manifest-path plugins/Cargo.toml
	mkdir -p project/plugins
	cp plugins/target/wasm32-wasip2/release/*.wasm project/plugins/

run: plugins
	HOST_URL=$${HOST_URL:-127.0.0.1} cargo run --bin microservice -- serve

# The end-to-end tests build the plugins and test plugins from source
# themselves. The engine's suite runs again in the `cli` mode (the default is
# `worker`), and so do the `microservice run` tests.
test: setup
	cargo test --workspace
	# The first-party plugins' own unit tests (the journal's store, format
	# and recovery among them), natively: they are plain std code.
	cd plugins && cargo test --workspace --target "$$(rustc -vV | sed -n 's/^host: //p')"
	ENGINE_MODE=cli cargo test --test e2e -- inbox:: flows:: engine:: sync:: credentials:: cron:: shutdown:: cli::run::
	# And the whole end-to-end suite again on PostgreSQL: each service on a
	# database of its own in one throwaway cluster the tests start
	# (tests/e2e/postgres.rs); about 4 minutes more. The tests of the journal
	# and of message-store plugins keep the embedded store (Launch::embedded).
	STORAGE=postgres cargo test --test e2e -- --skip cluster

# The suite on a busy machine: `make test` RUNS times (default 3) while
# stress-ng hogs every core twice over; prints each run's time and load.
test-stress:
	tests/stress.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo fmt --manifest-path plugins/Cargo.toml --all -- --check
	cargo fmt --manifest-path tests/plugins/Cargo.toml --all -- --check

release:
	cargo build --release --bin microservice

bench:
	bench/run-all.sh
	python3 bench/engine.py

image:
	docker build -t openfn-microservice .
