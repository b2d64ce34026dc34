# The two commands of the README: `make demo` and `make test`. Both create and use .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ENV := VOICERAG_DATA_DIR=.voicerag

.PHONY: demo test lint fmt typecheck bench studio clean install system-deps notebooks

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(DEMO_ENV) $(BIN)/voicerag ingest data/knowledge_base
	@echo
	@echo '$$ voicerag ask "KH-300の保証期間は何年ですか？"'
	@$(DEMO_ENV) $(BIN)/voicerag ask "KH-300の保証期間は何年ですか？"
	@echo
	@echo '$$ voicerag ask "How long can I return a product?"'
	@$(DEMO_ENV) $(BIN)/voicerag ask "How long can I return a product?"
	@echo
	@echo '$$ voicerag ask "Is the Kumo Halo in stock?"   (the company database, a live source)'
	@$(DEMO_ENV) $(BIN)/voicerag ask "Is the Kumo Halo in stock?"
	@echo
	@echo "Next: talk to it with  $(BIN)/voicerag chat   (or: source $(BIN)/activate && voicerag chat)"

# Two pytest-xdist workers, a test module each at a time (module fixtures: one server, one ingest):
# most tests wait on a command or a server, so two workers use both cores.
TEST_WORKERS ?= 2
# Bytecode first: with PYTHONDONTWRITEBYTECODE set (CI images often set it) every `voicerag` command a
# test runs would compile the project again (~0.4 s each); stale files are recompiled, never trusted.
test: $(STAMP) system-deps lint typecheck
	$(BIN)/python -m compileall -q voicerag retrievers graph agent
	$(BIN)/pytest -m "not evals" -q -n $(TEST_WORKERS) --dist loadscope --durations=15

system-deps:
	@./scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Every notebook of notebooks/ on a slice (the default data dir, e5; a few minutes the first time, while the
# sample knowledge base and the eval slices are embedded), executed copies with figures in build/notebooks/.
notebooks: $(STAMP)
	VOICERAG_NB_LIMIT=40 VOICERAG_NB_ROUNDS=3 $(BIN)/python scripts/run_notebooks.py --out build/notebooks

studio: $(STAMP)
	LANGGRAPH_CLI_NO_ANALYTICS=1 $(BIN)/langgraph dev --no-browser --host 127.0.0.1 --port 2024

clean:
	rm -rf $(VENV) .voicerag .langgraph_api .mypy_cache .ruff_cache .pytest_cache benchmarks/.data build
