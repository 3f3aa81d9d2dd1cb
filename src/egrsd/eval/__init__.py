"""Evaluate a model on math benchmarks under a token budget: accuracy and length, the two axes of the frontier.

For every problem the model draws K samples (Qwen3 thinking-mode sampling by default), each completion is graded
with `egrsd.rewards.accuracy.grade`, and per benchmark we report avg@K accuracy, pass@1 and pass@K (unbiased
estimator), completion and thinking lengths in tokens, and the truncation rate. Generation runs on vLLM (tensor or
data parallel) or, for CPU and tests, on transformers.

    egrsd-eval --model Qwen/Qwen3-1.7B --benchmarks math500,aime2024 --num-samples 4 --max-new-tokens 8192

or, from Python, `evaluate(EvalConfig(model=..., benchmarks=[...]))`, which returns the results it writes. The
package: `config` (EvalConfig), `benchmarks`, `tokens` (prompt ids, EOS and thinking tokens), `generation` and
`vllm_generation` (the backends), `metrics`, `run` (evaluate), `cli`, and `frontier` (runs compared).
"""

from .config import EvalConfig
from .run import evaluate


__all__ = ["EvalConfig", "evaluate"]
