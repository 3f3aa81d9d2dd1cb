"""GPU step time of grpo and egrsd (EGRSDTrainer) on a Qwen3-0.6B-shaped model with random weights, interleaved.

No download: the model is built from a Qwen3Config with Qwen3-0.6B's shape (hidden 1024, 28 layers, 16 heads, 8 KV
heads, head_dim 128, FFN 3072, vocabulary 151,936, tied embeddings) and the project's character tokenizer writes the
prompts. The model's vocabulary stays at 151,936, so the LM head, the sampling and the teacher's full-vocabulary
entropy cost what they cost with Qwen3's real tokenizer; sampled ids beyond the character set decode to nothing,
which only the (toy) reward sees. Every rollout is forced to --max-completion-length tokens (min_new_tokens), so
the work per step is fixed.

8 prompts x 8 rollouts make one generation batch of 64, trained as 8 micro-batches of 8 (gradient accumulation 8,
one optimizer step per generation, on-policy: TRL computes no separate old log-probs). The methods take turns step by
step, as in bench/step_time.py. Peak GPU memory is torch's max_memory_allocated over each method's steps (both
trainers' weights and optimizer states are resident throughout).

    python bench/gpu_step.py --steps 2 --json gpu_step.json     # on the GPU machine: bench/gpu_step.sh
    python bench/gpu_step.py --tiny                              # CPU smoke run of the same code
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling step_time module, however run

import torch  # noqa: E402
from step_time import StepTimer, build_dataset, hashed_reward, run_step  # noqa: E402
from transformers import PrinterCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402


METHODS = ("grpo", "egrsd")
QWEN3_0_6B_SHAPE = dict(
    vocab_size=151_936,
    hidden_size=1024,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=3072,
    max_position_embeddings=40_960,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per method (default 2; 1 with --tiny)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=8, help="rollouts per forward/backward (and teacher pass)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no new round after this many seconds of stepping (a cut call still reports what it measured)",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny shape and sizes, float32, runs on CPU in seconds")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 1 if args.tiny else 2
    if args.tiny:
        args.prompts, args.num_generations, args.max_completion_length, args.micro_batch = 2, 2, 8, 2
        args.warmup = 0
    return args


def build_model(shape: dict, tokenizer, dtype: torch.dtype, device: torch.device, seed: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        **shape,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    with torch.device(device):  # initialize on the GPU: 0.6B random weights on the CPU take a while
        model = Qwen3ForCausalLM._from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_trainer(method: str, args, tokenizer, dataset, output_dir: str, device: torch.device):
    from egrsd.configs import EGRSDConfig
    from egrsd.trainer import EGRSDTrainer

    on_gpu = device.type == "cuda"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    if args.tiny:
        from egrsd.testbed.model import SMOKE_TEST_SIZE

        shape = dict(SMOKE_TEST_SIZE, vocab_size=512, tie_word_embeddings=True)
    else:
        shape = QWEN3_0_6B_SHAPE
    model = build_model(shape, tokenizer, dtype, device, args.seed)
    rollouts = args.prompts * args.num_generations
    config = EGRSDConfig(
        output_dir=os.path.join(output_dir, method),
        credit_method=method,
        teacher_model_kind="live",
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=rollouts // args.micro_batch,  # one optimizer step per generation batch
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        generation_kwargs={"min_new_tokens": args.max_completion_length},
        max_steps=1,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=not on_gpu,
        bf16=on_gpu,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
    )
    trainer = EGRSDTrainer(
        model=model, reward_funcs=hashed_reward, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.remove_callback(PrinterCallback)
    timer = StepTimer()
    trainer.add_callback(timer)
    return trainer, timer


def main(argv=None) -> dict:
    args = parse_args(argv)
    hf_logging.set_verbosity_error()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not args.tiny and device.type != "cuda":
        raise SystemExit("no CUDA device: run on the GPU machine, or pass --tiny for the CPU smoke run")
    rollouts = args.prompts * args.num_generations
    if rollouts % args.micro_batch:
        raise SystemExit(f"--micro-batch {args.micro_batch} must divide prompts x rollouts = {rollouts}")
    from egrsd.testbed.tokenizer import build_tokenizer

    device_name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    log(f"device {device_name}; torch {torch.__version__}")
    tokenizer = build_tokenizer()
    dataset = build_dataset(args.prompts, args.seed)
    methods = list(args.methods)
    records: dict[str, list[dict]] = {m: [] for m in methods}
    peak_bytes = dict.fromkeys(methods, 0)
    with tempfile.TemporaryDirectory() as output_dir:
        trainers = {}
        for method in methods:
            log(f"building {method} trainer")
            trainers[method] = build_trainer(method, args, tokenizer, dataset, output_dir, device)
        log("models built")
        started = time.perf_counter()
        for round_index in range(args.warmup + args.steps):
            elapsed = time.perf_counter() - started
            if args.budget_s is not None and round_index > args.warmup and elapsed > args.budget_s:
                log(f"stopping after {round_index - args.warmup} timed round(s): {elapsed:.0f} s > --budget-s")
                break
            shift = round_index % len(methods)
            for method in methods[shift:] + methods[:shift]:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                step = run_step(*trainers[method])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    peak_bytes[method] = max(peak_bytes[method], torch.cuda.max_memory_allocated())
                warm = round_index < args.warmup
                if not warm:
                    records[method].append(step)
                memory = f", peak {peak_bytes[method] / 2**30:.2f} GiB" if device.type == "cuda" else ""
                log(
                    f"{method} step {round_index + 1}/{args.warmup + args.steps}{' (warm-up)' if warm else ''}: "
                    f"{step['wall']:.2f} s (rollout {step['rollout']:.2f}, teacher {step['teacher']:.2f}, "
                    f"fwd+bwd {step['train_fwd_bwd']:.2f}){memory}"
                )
    median_s = {m: statistics.median(r["wall"] for r in records[m]) for m in methods}
    parts = ("rollout", "teacher", "train_fwd_bwd", "optimizer_other", "step_time")
    result = {
        "median_s": median_s,
        "breakdown_s": {m: {p: statistics.median(r[p] for r in records[m]) for p in parts} for m in methods},
        "peak_gpu_mem_gb": {m: peak_bytes[m] / 2**30 for m in methods} if device.type == "cuda" else None,
        "samples_s": {m: [round(r["wall"], 3) for r in records[m]] for m in methods},
        "device": device_name,
        "settings": {
            "model": "tiny" if args.tiny else "Qwen3-0.6B shape, random weights, bf16, sdpa",
            "prompts": args.prompts,
            "num_generations": args.num_generations,
            "max_completion_length": args.max_completion_length,
            "micro_batch": args.micro_batch,
            "gradient_checkpointing": args.gradient_checkpointing,
            "warmup": args.warmup,
            "steps": args.steps,
            "torch": torch.__version__,
        },
    }
    if "grpo" in methods:
        result["ratio_to_grpo"] = {m: median_s[m] / median_s["grpo"] for m in methods}
    for m in methods:
        parts_s = result["breakdown_s"][m]
        ratio = result.get("ratio_to_grpo", {}).get(m, float("nan"))
        memory = f", peak {result['peak_gpu_mem_gb'][m]:.1f} GiB" if result["peak_gpu_mem_gb"] else ""
        print(
            f"{m:<6} median {median_s[m]:.2f} s (x{ratio:.3f} grpo): rollout {parts_s['rollout']:.2f}, "
            f"teacher {parts_s['teacher']:.2f}, fwd+bwd {parts_s['train_fwd_bwd']:.2f}{memory}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
