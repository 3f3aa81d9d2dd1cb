# The front door. `make demo` and `make test` set everything up themselves (a .venv in this folder).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.egrsd-installed
# CPU build of torch; installed first so nothing else can pull a CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-gpu test test-slow demo testbed-base testbed-frontier quality style clean train train-4b train-8b \
	eval frontier

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

# The embedded default: the shipped verbose base trained with CL-EGRSD on a CPU, evaluated before and after.
demo: install
	$(PY) -m egrsd.testbed.demo --recipe recipes/tiny/cl_egrsd/config.yaml --output-dir outputs/demo

# Rebuild the shipped testbed base from the project's generator (~6 min on 10 threads, longer on 2 cores).
testbed-base: install
	$(VENV)/bin/egrsd-testbed build-base --ship --force

# The testbed's frontier: five methods x three seeds, equal budgets (a bench, ~35 min on 2 cores).
testbed-frontier: install
	$(PY) bench/testbed_frontier.py --seeds 0 1 2 --output-dir outputs/testbed-frontier

# The same over training time: held-out accuracy and length from step 0 to 120 (a bench sized for <= 75 min on 2
# cores, two runs at a time; the README gives the measured time).
.PHONY: testbed-curves
testbed-curves: install
	$(PY) bench/testbed_curves.py --seeds 0 1 2 --max-steps 120 --output-dir outputs/testbed-curves

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

# --- Training ---------------------------------------------------------------------------------------------------
#   make train RECIPE=recipes/tiny/egrsd/config.yaml                    (CPU, one process)
#   make train RECIPE=recipes/Qwen3-4B/cl_egrsd/config.yaml ACCELERATE_CONFIG=launch/accelerate/zero3.yaml NUM_PROCESSES=8
#   make train-8b [METHOD=cl_egrsd] [VLLM_MODE=server VLLM_HOST=host] [ARGS="--max_steps 100"]
RECIPE ?= recipes/tiny/egrsd/config.yaml
ACCELERATE_CONFIG ?= launch/accelerate/cpu.yaml
NUM_PROCESSES ?=
METHOD ?= egrsd
ARGS ?=
# vLLM colocated with training on the node's 8 GPUs; VLLM_MODE=server points training at launch/vllm_serve.sh.
VLLM_MODE ?= colocate
VLLM_HOST ?= localhost
VLLM_ARGS = $(if $(filter server,$(VLLM_MODE)),--vllm_mode server --vllm_server_host $(VLLM_HOST))
# Where the GPU stack lives (`make install-gpu`).
GPU_VENV_BIN = $(GPU_VENV)/bin

train: install
	$(VENV)/bin/accelerate launch --config_file $(ACCELERATE_CONFIG) $(if $(NUM_PROCESSES),--num_processes $(NUM_PROCESSES)) \
		-m egrsd.train --config $(RECIPE) $(ARGS)

train-4b train-8b: train-%b:
	$(GPU_VENV_BIN)/accelerate launch --config_file launch/accelerate/zero3.yaml --num_processes $(or $(NUM_PROCESSES),8) \
		-m egrsd.train --config recipes/Qwen3-$*B/$(METHOD)/config.yaml $(VLLM_ARGS) $(ARGS)

# --- Evaluation: the accuracy-length frontier -------------------------------------------------------------------
#   make eval MODEL=outputs/Qwen3-8B/egrsd BENCHMARKS=math500,aime2024 K=4 BUDGET=8192 [OUTPUT=dir] [EVAL_ARGS=...]
#   make frontier RUNS="outputs/eval/base/results.json outputs/eval/egrsd/results.json" [LABELS=base,egrsd]
MODEL ?=
BENCHMARKS ?= math500,aime2024,aime2025
K ?= 4
BUDGET ?= 8192
OUTPUT ?=
RUNS ?=
LABELS ?=
EVAL_ARGS ?=
# The GPU venv (vLLM) when `make install-gpu` made one, else the CPU venv (transformers backend).
EVAL_VENV ?= $(if $(wildcard $(GPU_VENV)/bin/egrsd-eval),$(GPU_VENV),$(VENV))

eval: $(if $(filter $(VENV),$(EVAL_VENV)),install)
	@test -n "$(MODEL)" || { echo 'usage: make eval MODEL=path-or-hub-id [BENCHMARKS=math500,aime2024] [K=4] [BUDGET=8192]'; exit 2; }
	$(EVAL_VENV)/bin/egrsd-eval --model "$(MODEL)" --benchmarks "$(BENCHMARKS)" --num-samples $(K) \
		--max-new-tokens $(BUDGET) $(if $(OUTPUT),--output-dir "$(OUTPUT)") $(EVAL_ARGS)

frontier: install
	@test -n "$(RUNS)" || { echo 'usage: make frontier RUNS="a/results.json b/results.json" [LABELS=a,b] [OUTPUT=dir]'; exit 2; }
	$(VENV)/bin/egrsd-frontier $(RUNS) $(if $(LABELS),--labels "$(LABELS)") --output-dir "$(or $(OUTPUT),outputs/frontier)"
