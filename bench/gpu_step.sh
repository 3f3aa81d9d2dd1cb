#!/usr/bin/env bash
# GPU step time of grpo vs egrsd on a Qwen3-0.6B-shaped model (bench/gpu_step.py), for a lent H100/H200.
#
# Run from the repository root on the device machine, with the wheels of docs/performance.md in .whl/:
#   bash bench/gpu_step.sh [gpu_step.py flags, e.g. --steps 2]
# Writes $OUT/gpu_step.json (and $OUT/gpu_step.log) when OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
stamp() { date +%H:%M:%S; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# The image has torch (CUDA), transformers and accelerate, but not TRL 1.16, datasets or their small dependencies:
# those travel as wheels, installed into a private folder that shadows the image's copies.
if compgen -G ".whl/*.whl" >/dev/null; then
  echo "[$(stamp)] installing $(ls .whl/*.whl | wc -l) wheels from .whl/"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The repository's own code (egrsd under src/) without installing it: the bench needs no egrsd.rewards, which only an
# install maps from the top-level rewards/ folder.
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

python3 - <<'EOF' || exit 1
import torch, transformers, accelerate, datasets, trl
print("python", __import__("sys").version.split()[0], "| torch", torch.__version__, "| transformers",
      transformers.__version__, "| trl", trl.__version__, "| datasets", datasets.__version__, "| accelerate",
      accelerate.__version__, "| cuda", torch.cuda.is_available())
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

echo "[$(stamp)] bench/gpu_step.py $*"
if [ -n "${OUT:-}" ]; then
  python3 bench/gpu_step.py --json "$OUT/gpu_step.json" "$@" 2>&1 | tee "$OUT/gpu_step.log"
else
  python3 bench/gpu_step.py "$@"
fi
status=$?
echo "[$(stamp)] done (exit $status)"
exit $status
