# Two entry points a fresh machine needs: `make demo` and `make test`.
# Both create .venv on first use; nothing is installed outside it
# (except redis-server and redis-tools, which `make test` installs with apt-get when missing
# and possible).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: venv demo test lint bench redis-server
venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/support_swarm.py

# redis-server runs the single server, the Cluster nodes and the Sentinels (--sentinel);
# redis-cli (redis-tools) forms the test Cluster.
redis-server:
	@{ command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq redis-server redis-tools) >/dev/null; \
	  else echo "redis-server/redis-cli not found: Redis tests will be skipped"; fi; }

test: $(STAMP) redis-server
	$(BIN)/ruff check jarvis_trio tests benchmarks examples
	$(BIN)/ruff format --check jarvis_trio tests benchmarks examples
	$(BIN)/mypy  # the library, examples, benchmarks and tests/typing (pyproject.toml)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check jarvis_trio tests benchmarks examples
	$(BIN)/ruff format --check jarvis_trio tests benchmarks examples
	$(BIN)/mypy  # the library, examples, benchmarks and tests/typing (pyproject.toml)

bench: $(STAMP)
	$(BIN)/python -m benchmarks
