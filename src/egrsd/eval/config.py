"""What determines an evaluation run: `EvalConfig`, recorded whole in the results JSON."""

from dataclasses import dataclass

from .benchmarks import DEFAULT_INSTRUCTION


@dataclass
class EvalConfig:
    """Everything that determines an evaluation run (recorded in the results JSON)."""

    model: str
    benchmarks: list[str]
    num_samples: int = 1
    max_new_tokens: int = 4096
    # Qwen3's recommended thinking-mode sampling.
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    backend: str | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    batch_size: int = 16
    max_problems: int | None = None
    seed: int = 0
    output_dir: str | None = None
    enable_thinking: bool = True
    system_prompt: str | None = None
    instruction: str = DEFAULT_INSTRUCTION
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
