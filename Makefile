# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export MPLBACKEND := Agg

.PHONY: demo test lint lab bench clean system-packages compat smoke

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name torchgrad-magic --display-name "Python (torchgrad-magic)" >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/run_demo.py

test: $(STAMP) system-packages lint smoke
	$(PY) -m pytest -n 2 -q

# The built wheel in a fresh venv (no dev extras, constraints.txt pins, torch 2.13.0 from this
# machine's disk): %load_ext, the tutorial cells, --plot/--graph/--symbolic, one kernel run.
smoke:
	$(PYTHON) scripts/compat.py --only pinned

# The compatibility matrix (README: "Supported versions"); FULL=1 adds Python 3.10/3.12/3.13
# (multi-GB CUDA wheels of torch from the registry); OLDER=1 torch releases below the floor;
# KERNELS=1 the kernel tests against the colab and floors venvs' kernels.
compat:
	$(PYTHON) scripts/compat.py $(if $(FULL),--full) $(if $(OLDER),--older) $(if $(KERNELS),--kernel-suite)

# jupyter refuses to start as root (a container, a CI runner) without --allow-root
ifeq ($(shell id -u),0)
LAB_FLAGS := --allow-root
endif
lab: $(STAMP)
	$(PY) -m jupyter lab examples $(LAB_FLAGS)

system-packages:
	bash scripts/system-packages.sh

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist examples/*.executed.ipynb .pytest_cache .ruff_cache .hypothesis
