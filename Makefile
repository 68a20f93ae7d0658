# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export MPLBACKEND := Agg

.PHONY: demo test lint lab bench clean system-packages

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name torchgrad-magic --display-name "Python (torchgrad-magic)" >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/run_demo.py

test: $(STAMP) system-packages lint
	$(PY) -m pytest -n 2 -q

lab: $(STAMP)
	$(PY) -m jupyter lab examples

system-packages:
	bash scripts/system-packages.sh

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build examples/*.executed.ipynb .pytest_cache .ruff_cache .hypothesis
