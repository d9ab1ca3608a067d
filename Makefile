# evalkit: `make demo` runs the offline pipeline on tiny models, `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Official benchmark data: the shared copy beside the project when present, else ~/.cache/evalkit/data.
DATA ?= $(shell [ -d ../shared/benchmarks ] && echo ../shared/benchmarks || echo $$HOME/.cache/evalkit/data)

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[all]"
	touch $@

demo: setup
	[ -f $(DATA)/geneval/evaluation_metadata.jsonl ] || $(BIN)/evalkit data fetch geneval --data-dir $(DATA)
	$(BIN)/evalkit run geneval --model tiny-sd3 --detector tiny --limit 8 --data-dir $(DATA) --runs-dir runs/demo
	$(BIN)/evalkit report runs/demo/geneval/* --format latex

test: setup
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check evalkit tests bench

clean:
	rm -rf $(VENV) runs/demo
