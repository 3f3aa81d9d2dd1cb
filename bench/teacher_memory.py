"""Peak extra memory and time of the project's teacher scoring, against the naive full-logits computation.

Each measurement runs in a fresh subprocess: a small Qwen3 (1 layer, hidden 64) with Qwen3's 151,936-symbol
vocabulary scores the T completion tokens of one sequence (batch of one, all-ones attention mask, so SDPA takes its
causal kernel and no dense T x T mask exists). After a small warm-up of the same path, the heap is trimmed and the
resident set is the baseline; the peak is the larger of a 0.5 ms RSS sampler's maximum and the kernel's high-water
mark (ru_maxrss, when the measurement raised it), minus that baseline.

Per T, four subprocesses: `project` (egrsd.scoring.score_tokens, the default: one forward over prompt + completion
with logits_to_keep=1, then the LM head in chunks), `prompt_cache` (the same with `share_prompts=True`, the
`teacher_prompt_cache` option: the prompt's forward, then the completion's on its key/value cache, which keeps
every layer's keys and values and gives SDPA a dense mask), `backbone` (the backbone forward alone, to show how much
of the project's peak is the backbone's own activations) and `naive` (full logits, log_softmax, entropy; skipped
where its estimated peak, four T x V float32 buffers, would exceed --naive-limit-gb).

    python bench/teacher_memory.py --json teacher_memory.json
"""

import argparse
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from contextlib import contextmanager


VOCAB_QWEN3 = 151_936
MIB = 2**20
# The naive path holds the logits, log_softmax's output and the two temporaries of exp(log p) * log p at once.
NAIVE_BUFFERS = 4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 16384], help="completion T")
    parser.add_argument("--vocab", type=int, default=VOCAB_QWEN3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--prompt-length", type=int, default=64)
    parser.add_argument("--naive-limit-gb", type=float, default=8.0, help="skip naive above this estimated peak")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process instead of fresh ones (smoke tests: fast, but peaks then depend on history)",
    )
    # Internal: one measurement in this process (what the subprocesses run).
    parser.add_argument("--worker", choices=["project", "prompt_cache", "backbone", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def trim_heap() -> None:
    """Hand freed heap pages back to the OS, so the baseline RSS holds no reusable free memory."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: the baseline may then hide some reuse, which only lowers the reported peak
        pass


class PeakSampler:
    """Highest RSS seen by a background thread (torch releases the GIL inside its kernels, so the thread runs)."""

    def __init__(self, interval_s: float = 0.0005):
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self):
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def build_model(vocab: int, hidden: int, layers: int, max_positions: int):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).eval()


@contextmanager
def recording_attention_masks(calls: list):
    """Note, for each SDPA call, whether a dense mask was passed (the check that attention stays O(T) in memory)."""
    import torch.nn.functional as functional

    sdpa = functional.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        calls.append(kwargs.get("attn_mask") is not None)
        return sdpa(*args, **kwargs)

    functional.scaled_dot_product_attention = recording_sdpa
    try:
        yield calls
    finally:
        functional.scaled_dot_product_attention = sdpa


def measure(args) -> dict:
    """One measurement in this (fresh) process: peak extra bytes over the post-setup baseline, and seconds."""
    import torch

    from egrsd.scoring import naive_logps_and_entropy, score_tokens

    torch.set_num_threads(args.threads)
    length, prompt_length = args.length, args.prompt_length
    model = build_model(args.vocab, args.hidden, args.layers, prompt_length + length + 1)
    dense_masks: list[bool] = []

    def run(total_completion: int):
        generator = torch.Generator().manual_seed(1)
        input_ids = torch.randint(0, args.vocab, (1, prompt_length + total_completion), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        with torch.no_grad():
            if args.worker in ("project", "prompt_cache"):
                prompt, completion = input_ids[:, :prompt_length], input_ids[:, prompt_length:]
                return score_tokens(
                    model,
                    prompt.tolist(),
                    completion,
                    torch.ones_like(completion),
                    pad_token_id=0,
                    share_prompts=args.worker == "prompt_cache",
                )
            if args.worker == "backbone":
                return model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=total_completion + 1)
            return naive_logps_and_entropy(logits.logits[:, :-1], input_ids[:, -total_completion:])

    run(min(32, length))  # loads kernels and lazily built state (and imports) outside the measurement
    trim_heap()
    baseline, high_water_before = rss_bytes(), max_rss_bytes()
    start = time.perf_counter()
    with recording_attention_masks(dense_masks), PeakSampler() as sampler:
        result = run(length)
        del result
    seconds = time.perf_counter() - start
    high_water = max_rss_bytes()
    peak = max(sampler.peak, high_water if high_water > high_water_before else 0)
    return {
        "peak_extra_mb": (peak - baseline) / MIB,
        "seconds": seconds,
        "baseline_rss_mb": baseline / MIB,
        "dense_attention_mask": any(dense_masks),
    }


def run_worker(mode: str, length: int, args) -> dict:
    if args.in_process:
        return measure(argparse.Namespace(**{**vars(args), "worker": mode, "length": length}))
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        mode,
        "--length",
        str(length),
        "--vocab",
        str(args.vocab),
        "--hidden",
        str(args.hidden),
        "--layers",
        str(args.layers),
        "--prompt-length",
        str(args.prompt_length),
        "--threads",
        str(args.threads),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} at T={length} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def naive_estimate_bytes(length: int, vocab: int) -> int:
    return NAIVE_BUFFERS * length * vocab * 4


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args)))
        return {}
    rows = []
    for length in args.lengths:
        project = run_worker("project", length, args)
        prompt_cache = run_worker("prompt_cache", length, args)
        backbone = run_worker("backbone", length, args)
        naive = None
        if naive_estimate_bytes(length, args.vocab) <= args.naive_limit_gb * 2**30:
            naive = run_worker("naive", length, args)
        rows.append(
            {
                "T": length,
                "V": args.vocab,
                "peak_extra_mb": round(project["peak_extra_mb"], 1),
                "seconds": round(project["seconds"], 3),
                "prompt_cache_peak_extra_mb": round(prompt_cache["peak_extra_mb"], 1),
                "prompt_cache_seconds": round(prompt_cache["seconds"], 3),
                "backbone_peak_extra_mb": round(backbone["peak_extra_mb"], 1),
                "naive_peak_extra_mb": round(naive["peak_extra_mb"], 1) if naive else None,
                "naive_seconds": round(naive["seconds"], 3) if naive else None,
                "naive_estimate_mb": round(naive_estimate_bytes(length, args.vocab) / MIB, 1),
                "logits_fp32_mb": round(length * args.vocab * 4 / MIB, 1),
                "dense_attention_mask": project["dense_attention_mask"],
                "prompt_cache_dense_attention_mask": prompt_cache["dense_attention_mask"],
            }
        )
        print(f"[{time.strftime('%H:%M:%S')}] T={length} done", file=sys.stderr, flush=True)
    result = {
        "rows": rows,
        "settings": {
            "model": f"Qwen3, {args.layers} layer(s), hidden {args.hidden}, float32, sdpa, batch of one",
            "prompt_length": args.prompt_length,
            "threads": args.threads,
            "naive_limit_gb": args.naive_limit_gb,
            "command": "python bench/teacher_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "machine": {"cores": os.cpu_count(), "loadavg": os.getloadavg()[0]},
    }
    print_table(rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'T':>6} {'V':>7} {'project MB':>10} {'cached MB':>9} {'backbone MB':>11} {'naive MB':>9} "
        f"{'logits MB':>9} {'project s':>9} {'cached s':>8} {'naive s':>8}"
    )
    print(header)
    print("-" * len(header))

    def cell(value, width, fmt):
        return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

    for row in rows:
        print(
            f"{row['T']:>6} {row['V']:>7} {row['peak_extra_mb']:>10.1f} {row['prompt_cache_peak_extra_mb']:>9.1f} "
            f"{row['backbone_peak_extra_mb']:>11.1f} {cell(row['naive_peak_extra_mb'], 9, '.1f')} "
            f"{row['logits_fp32_mb']:>9.1f} {row['seconds']:>9.2f} {row['prompt_cache_seconds']:>8.2f} "
            f"{cell(row['naive_seconds'], 8, '.2f')}"
        )


if __name__ == "__main__":
    main()
