#!/usr/bin/env bash
# Start TRL's vLLM rollout server by hand (server mode), on a node or GPUs that training does not use:
#   launch/vllm_serve.sh Qwen/Qwen3-8B
#   CUDA_VISIBLE_DEVICES=6,7 VLLM_DP=2 launch/vllm_serve.sh Qwen/Qwen3-4B
# Then train with `--vllm_mode server --vllm_server_host <this host>` (make train-8b VLLM_MODE=server does that).
set -euo pipefail
MODEL=${1:?usage: launch/vllm_serve.sh MODEL [extra trl vllm-serve args]}
shift
VENV=${VENV:-.venv-gpu}
TRL=${TRL:-$VENV/bin/trl}
# One replica per GPU (data parallel) suits 4B/8B models; raise VLLM_TP for larger ones.
VLLM_TP=${VLLM_TP:-1}
VLLM_DP=${VLLM_DP:-8}
VLLM_PORT=${VLLM_PORT:-8000}
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
