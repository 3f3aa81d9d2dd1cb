"""How far `teacher_backend: vllm`'s teacher scores are from the trainer path's, at a vocabulary of Qwen3's size.

A random-init tiny Qwen3 with V = 151,936 (Qwen3's LM head width) scores random teacher sequences both ways: the
trainer path (`egrsd.scoring.score_tokens`, full-vocabulary entropies) and the vLLM scorer (`egrsd.vllm_teacher`,
top-k prompt log-probs) on a float32 engine. A random model's distributions are near-flat at temperature 1, so the
logits are also sharpened (`--sharpness`: the scoring temperature is 1/sharpness, which divides the logits exactly as
TRL's temperature does) to cover the teacher entropies of a trained model, from a few nats to near 0.

For each sharpness and k it prints the true entropy's mean and share of positions under 1 nat, the entropy error
(estimate - truth; the estimate is the lower bound, so the error is <= 0), the bound gap (upper - lower), the tail
mass, and the gate's error: g = g_min + (1 - g_min) (1 - min(1, H / H_ref)) with g_min = 0.2 and H_ref the 95th
percentile of each backend's own entropies, as `entropy_ref: quantile` computes it in training.

    .venv-vllm/bin/python bench/vllm_teacher_accuracy.py --topk 20 100
"""

import argparse
import json
import os
import sys
import tempfile
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=151_936)
    parser.add_argument("--topk", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--sharpness", type=float, nargs="+", default=[1.0, 4.0, 8.0, 16.0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--completion-length", type=int, default=64)
    parser.add_argument("--gate-floor", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process, as TRL's colocated one
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from vllm import LLM

    from egrsd.scoring import score_tokens
    from egrsd.vllm_teacher import VLLMTeacherScorer, topk_entropy

    torch.manual_seed(args.seed)
    config = Qwen3Config(
        vocab_size=args.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    model = Qwen3ForCausalLM(config).eval()
    workdir = tempfile.mkdtemp(prefix="vllm-teacher-accuracy-")
    model.save_pretrained(workdir)
    # vLLM needs a tokenizer folder to start; detokenization is off in scoring, so any tokenizer will do.
    from egrsd.testbed.tokenizer import build_tokenizer

    build_tokenizer().save_pretrained(workdir)
    start = time.perf_counter()
    llm = LLM(
        model=workdir,
        dtype="float32",
        max_logprobs=max(args.topk),
        max_model_len=512,
        seed=0,
        enforce_eager=True,
    )
    print(f"engine started in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    generator = torch.Generator().manual_seed(args.seed)
    prompts = [
        torch.randint(0, args.vocab_size, (int(n),), generator=generator).tolist()
        for n in torch.randint(16, 64, (args.rows,), generator=generator)
    ]
    completion_ids = torch.randint(0, args.vocab_size, (args.rows, args.completion_length), generator=generator)
    mask = torch.ones_like(completion_ids)
    valid = mask.bool()

    def gate(entropy: torch.Tensor) -> torch.Tensor:
        entropy_ref = torch.quantile(entropy[valid].double(), 0.95).clamp(min=1e-12)
        return args.gate_floor + (1 - args.gate_floor) * (1 - (entropy.double() / entropy_ref).clamp(max=1.0))

    rows = []
    for sharpness in args.sharpness:
        temperature = 1.0 / sharpness
        ref_logps, ref_entropy = score_tokens(
            model, prompts, completion_ids, mask, pad_token_id=0, temperature=temperature
        )
        truth = ref_entropy[valid].double()
        for k in args.topk:
            scorer = VLLMTeacherScorer(llm, k)
            start = time.perf_counter()
            logps, entropy = scorer.score(prompts, completion_ids, mask, temperature)
            seconds = time.perf_counter() - start
            error = entropy[valid].double() - truth
            gate_error = (gate(entropy) - gate(ref_entropy))[valid].abs()
            stats = scorer.last_stats
            rows.append(
                {
                    "sharpness": sharpness,
                    "k": k,
                    "true_entropy_mean": float(truth.mean()),
                    "true_entropy_under_1_frac": float((truth < 1).double().mean()),
                    "logp_error_max": float((logps - ref_logps)[valid].abs().max()),
                    "entropy_error_mean": float(error.mean()),
                    "entropy_error_min": float(error.min()),
                    "entropy_error_max": float(error.max()),
                    "entropy_gap_mean": stats["entropy_gap_sum"] / stats["positions"],
                    "tail_mass_mean": stats["tail_mass_sum"] / stats["positions"],
                    "gate_error_mean": float(gate_error.mean()),
                    "gate_error_max": float(gate_error.max()),
                    "vllm_seconds": seconds,
                }
            )
    del topk_entropy  # imported to fail early if the module changed

    print(f"V = {args.vocab_size}, {args.rows} rows x {args.completion_length} completion tokens, float32 engine")
    print(
        "| sharpness | k | true H mean | H < 1 nat | max abs logp err | H err mean | H err min | bound gap mean "
        "| tail mass mean | gate err mean | gate err max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['sharpness']:g} | {row['k']} | {row['true_entropy_mean']:.3f} "
            f"| {row['true_entropy_under_1_frac']:.0%} | {row['logp_error_max']:.1e} "
            f"| {row['entropy_error_mean']:.4f} | {row['entropy_error_min']:.4f} | {row['entropy_gap_mean']:.4f} "
            f"| {row['tail_mass_mean']:.4f} | {row['gate_error_mean']:.4f} | {row['gate_error_max']:.4f} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
