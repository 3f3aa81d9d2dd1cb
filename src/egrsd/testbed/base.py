"""The verbose base model of the testbed: a tiny Qwen3 trained on CPU with TRL's SFTTrainer, built once and cached.

Two stages. Plain language-model training on packed rows of derivations teaches the arithmetic itself (chat SFT
alone on a model this small learns the format but not the sums). Completion-only chat SFT then teaches the behaviour
EGRSD starts from: plain prompts answered mostly in the verbose style, prompts that carry the reference solution
(the teacher's form, built by `egrsd.teacher.build_teacher_prompt`) answered mostly concisely. A minority of the
reference-conditioned examples stay verbose so that the teacher, scoring the student's verbose rollouts, still
tracks the digits inside verbose text instead of losing its place; it keeps a low probability of starting a
verification, which is the signal the ratio carries.

A base is keyed by the hash of its settings. The default one ships in `assets/base/` (`egrsd-testbed build-base
--ship` rebuilds it); other settings are built under an output directory on first use (`ensure_base`).
"""

import dataclasses
import hashlib
import json
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
import trl
from datasets import Dataset
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

from egrsd.teacher_prompts import DEFAULT_TEACHER_TEMPLATE, build_teacher_prompt
from egrsd.testbed import arithmetic
from egrsd.testbed.base_eval import evaluate_base
from egrsd.testbed.model import build_tiny_qwen3
from egrsd.testbed.tokenizer import build_tokenizer


SETTINGS_FILE = "base_settings.json"
DEFAULT_OUTPUT_DIR = "outputs/testbed"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# Bump when the generator's text format changes, so that a cached or shipped base no longer matches.
DATA_FORMAT_VERSION = 1
# Held-out problems the build evaluates on (the `eval` split of this seed).
EVAL_SEED = 0


@dataclass(frozen=True)
class BaseSettings:
    """Everything that determines the base model; its hash names the cache entry and is checked against the shipped
    copy."""

    seed: int = 0
    # Model shape (tiny_qwen3_config's defaults: ~0.8M parameters).
    hidden_size: int = 128
    num_hidden_layers: int = 4
    # 4 query heads of 32 (2 key/value heads): 32 is the smallest head size vLLM's CPU attention supports.
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 384
    # Stage 1: plain language modelling on packed derivations. Accuracy appears in a sudden jump between 500 and
    # 1000 steps; fewer steps leave the base nearly unable to add.
    lm_steps: int = 1000
    lm_batch_size: int = 16
    lm_learning_rate: float = 3e-3
    lm_warmup_ratio: float = 0.02
    lm_row_length: int = 256
    lm_max_verification_loops: int = 3
    # Stage 2: completion-only chat SFT.
    sft_steps: int = 1200
    sft_batch_size: int = 16
    sft_learning_rate: float = 1.5e-3
    sft_warmup_ratio: float = 0.05
    # Mixture: share of examples whose prompt carries the reference solution (teacher form), and the verbose share
    # within each prompt kind.
    reference_fraction: float = 0.25
    reference_verbose_fraction: float = 0.15
    plain_verbose_fraction: float = 0.85
    teacher_template: str = DEFAULT_TEACHER_TEMPLATE
    data_format_version: int = DATA_FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def settings_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def model_kwargs(self) -> dict[str, int]:
        names = (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "intermediate_size",
        )
        return {name: getattr(self, name) for name in names}

    def replace(self, **changes) -> "BaseSettings":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown base setting(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


def shipped_base_path() -> Path:
    """Where the embedded default base lives inside the package."""
    return ASSETS_DIR / "base"


def read_base_info(path: str | Path) -> dict[str, Any] | None:
    """The settings JSON of a built base (settings, hash, build timing, evaluation), or None if absent."""
    file = Path(path) / SETTINGS_FILE
    if not file.is_file():
        return None
    return json.loads(file.read_text())


def is_complete_base(path: str | Path, settings: BaseSettings) -> bool:
    info = read_base_info(path)
    return (
        info is not None
        and info.get("settings_hash") == settings.settings_hash()
        and (Path(path) / "model.safetensors").is_file()
    )


def base_model(settings: BaseSettings, tokenizer: PreTrainedTokenizerBase) -> Qwen3ForCausalLM:
    """The freshly initialized model a build starts from (its config is what the shipped config must equal)."""
    return build_tiny_qwen3(tokenizer, seed=settings.seed, **settings.model_kwargs())


def base_model_config(settings: BaseSettings | None = None) -> Qwen3Config:
    settings = settings or BaseSettings()
    return base_model(settings, build_tokenizer()).config


def load_base(path: str | Path | None = None) -> tuple[Qwen3ForCausalLM, PreTrainedTokenizerBase]:
    """Load a built base (default: the shipped one) as (model, tokenizer), model in eval mode."""
    path = Path(path) if path is not None else shipped_base_path()
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no base model at {path}; build it with `egrsd-testbed build-base` (or `--ship` for the embedded one)"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = Qwen3ForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def ensure_base(
    output_dir: str | Path = DEFAULT_OUTPUT_DIR, settings: BaseSettings | None = None, progress: bool = True
) -> Path:
    """The base to use for `settings` (default settings: the shipped copy when it matches); built if missing."""
    settings = settings or BaseSettings()
    if is_complete_base(shipped_base_path(), settings):
        return shipped_base_path()
    path = Path(output_dir) / f"base-{settings.settings_hash()[:12]}"
    if not is_complete_base(path, settings):
        build_base(path, settings, progress=progress)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Training data


def language_model_texts(settings: BaseSettings) -> list[str]:
    """Derivation documents for stage 1, enough for one pass of lm_steps x lm_batch_size packed rows."""
    rng = arithmetic.split_rng(settings.seed, "base-lm")
    needed = settings.lm_steps * settings.lm_batch_size * settings.lm_row_length
    texts, total = [], 0
    for problem in arithmetic.sample_problems(rng, held_out=False, unique=False):
        if total >= needed:
            break
        text = arithmetic.language_model_document(problem, rng, settings.lm_max_verification_loops)
        texts.append(text)
        total += len(text) + 1  # one character per token, plus the eos TRL appends
    return texts


def chat_examples(settings: BaseSettings) -> list[dict[str, Any]]:
    """Conversational prompt-completion examples for stage 2 (one pass of sft_steps x sft_batch_size)."""
    rng = arithmetic.split_rng(settings.seed, "base-sft")
    count = settings.sft_steps * settings.sft_batch_size
    examples = []
    for problem in arithmetic.sample_problems(rng, held_out=False, count=count, unique=False):
        prompt = [{"role": "user", "content": problem.question}]
        with_reference = rng.random() < settings.reference_fraction
        verbose_share = settings.reference_verbose_fraction if with_reference else settings.plain_verbose_fraction
        style = arithmetic.VERBOSE if rng.random() < verbose_share else arithmetic.CONCISE
        if with_reference:
            prompt = build_teacher_prompt(prompt, arithmetic.dataset_row(problem), settings.teacher_template)
        completion = [{"role": "assistant", "content": arithmetic.completion_text(problem, style, rng)}]
        examples.append({"prompt": prompt, "completion": completion})
    return examples


# ----------------------------------------------------------------------------------------------------------------
# Building


def _sft_config(output_dir: Path, *, steps, batch_size, learning_rate, warmup_ratio, seed, progress, use_cpu, **extra):
    return trl.SFTConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=warmup_ratio,
        weight_decay=0.0,
        seed=seed,
        data_seed=seed,
        # SFTConfig defaults to bf16 autocast (about 3x slower on CPU) and gradient checkpointing (pointless here).
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=use_cpu,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, steps // 20),
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        **extra,
    )


def _train(model, tokenizer, dataset: Dataset, config) -> float:
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    return trainer.train().training_loss


def train_base(
    settings: BaseSettings, progress: bool = True, use_cpu: bool = True
) -> tuple[Qwen3ForCausalLM, PreTrainedTokenizerBase, dict[str, float]]:
    """Run both stages from a fresh init; returns (model, tokenizer, timings and final losses).

    `use_cpu=False` trains on the accelerator when there is one: faster, but not bit-identical to the CPU build.
    """
    tokenizer = build_tokenizer()
    model = base_model(settings, tokenizer)
    stats: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        lm_data = Dataset.from_dict({"text": language_model_texts(settings)})
        lm_config = _sft_config(
            Path(scratch) / "lm",
            steps=settings.lm_steps,
            batch_size=settings.lm_batch_size,
            learning_rate=settings.lm_learning_rate,
            warmup_ratio=settings.lm_warmup_ratio,
            seed=settings.seed,
            progress=progress,
            use_cpu=use_cpu,
            # Wrapped packing: fixed-length rows across document boundaries (bfd packing builds one huge row on CPU).
            packing=True,
            packing_strategy="wrapped",
            max_length=settings.lm_row_length,
        )
        stats["lm_loss"] = _train(model, tokenizer, lm_data, lm_config)
        stats["lm_seconds"] = time.perf_counter() - start

        start = time.perf_counter()
        sft_data = Dataset.from_list(chat_examples(settings))
        sft_config = _sft_config(
            Path(scratch) / "sft",
            steps=settings.sft_steps,
            batch_size=settings.sft_batch_size,
            learning_rate=settings.sft_learning_rate,
            warmup_ratio=settings.sft_warmup_ratio,
            seed=settings.seed,
            progress=progress,
            use_cpu=use_cpu,
            completion_only_loss=True,
            max_length=1024,
        )
        stats["sft_loss"] = _train(model, tokenizer, sft_data, sft_config)
        stats["sft_seconds"] = time.perf_counter() - start
    # The trainer turns the KV cache off for training; the saved base is for generation.
    model.config.use_cache = True
    model.eval()
    return model, tokenizer, stats


def save_base(model, tokenizer, path: str | Path, settings: BaseSettings, extra: dict[str, Any] | None = None) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    info = {"settings": settings.to_dict(), "settings_hash": settings.settings_hash(), **(extra or {})}
    (path / SETTINGS_FILE).write_text(json.dumps(info, indent=2) + "\n")


def build_base(
    output_dir: str | Path,
    settings: BaseSettings | None = None,
    progress: bool = True,
    evaluate: bool = True,
    num_eval: int = 200,
    use_cpu: bool = True,
) -> Path:
    """Train a base with `settings` and write it to `output_dir` (moved into place only once complete).

    With `evaluate`, the held-out evaluation (`evaluate_base`) is stored in the settings JSON next to the timings.
    """
    settings = settings or BaseSettings()
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, tokenizer, stats = train_base(settings, progress=progress, use_cpu=use_cpu)
    extra: dict[str, Any] = {
        "build": {
            **{k: round(v, 4) for k, v in stats.items()},
            "train_seconds": round(time.perf_counter() - start, 1),
            "device": str(model.device),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "python": platform.python_version(),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    }
    if evaluate:
        rows = arithmetic.make_split("eval", num_eval, seed=EVAL_SEED)
        extra["evaluation"] = evaluate_base(model, tokenizer, rows, settings.teacher_template, progress=progress)
        extra["evaluation"]["num_problems"] = num_eval
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    save_base(model, tokenizer, staging, settings, extra)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    staging.rename(output_dir)
    return output_dir
