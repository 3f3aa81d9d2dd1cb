# The front door. `make demo` and `make test` set everything up themselves (a .venv in this folder).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.egrsd-installed
# CPU build of torch; installed first so nothing else can pull a CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-gpu test test-slow demo quality style clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install $(TORCH_CPU)
	$(PY) -m pip install -e ".[test,trackio]"
	touch $(STAMP)

# GPU stack (vLLM, DeepSpeed, optional flash-attn) in its own venv; vLLM picks its CUDA torch.
GPU_VENV ?= .venv-gpu
install-gpu:
	test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install --upgrade pip
	$(GPU_VENV)/bin/python -m pip install -e ".[gpu,test]"
	-$(GPU_VENV)/bin/python -m pip install flash-attn --no-build-isolation

test: install
	$(PY) -m pytest -m "not slow" -q

test-slow: install
	$(PY) -m pytest -m slow -q

quality: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

style: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf outputs .pytest_cache .ruff_cache
