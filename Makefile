# `make test` works on a fresh machine: it builds .venv, installs the pinned CPU torch
# first (any other torch request pulls gigabytes of CUDA wheels), then the package.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0

.PHONY: install test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[test,ray]"  # ray: bark batch --ray and its tests
	$(PY) -m pip install -q --no-deps "encodec==0.1.1"  # a test oracle; its torchaudio would pin another torch
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
