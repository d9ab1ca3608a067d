# evalkit: `make demo` runs the offline pipeline on tiny models, `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Benchmark data: the shared copy beside the project, else a fetched copy in ~/.cache/evalkit/data, else the
# 8 GenEval prompts shipped for the demo (evalkit/protocol_data/demo, see its SOURCE.md): no network needed.
CACHED := $(HOME)/.cache/evalkit/data
DATA ?= $(shell if [ -d ../shared/benchmarks ]; then echo ../shared/benchmarks; \
	elif [ -f $(CACHED)/geneval/evaluation_metadata.jsonl ]; then echo $(CACHED); \
	else echo evalkit/protocol_data/demo; fi)

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[all]"
	touch $@

demo: setup
	@echo "demo data: $(DATA)"
	$(BIN)/evalkit run geneval --model tiny-sd3 --detector tiny --limit 8 --data-dir $(DATA) --runs-dir runs/demo
	$(BIN)/evalkit report runs/demo/geneval/* --format latex

test: setup
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check evalkit tests bench

clean:
	rm -rf $(VENV) runs/demo
