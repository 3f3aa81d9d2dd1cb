"""Evaluate a model on math benchmarks under a token budget: accuracy and length, the two axes of the frontier.

    egrsd-eval --model Qwen/Qwen3-1.7B --benchmarks math500,aime2024 --num-samples 4 --max-new-tokens 8192

The command line of `egrsd.eval.evaluate`; it prints the summary table and where the results are.
"""

import argparse
import sys
from collections.abc import Sequence

from egrsd.cli import ArgumentParser, run_cli
from egrsd.eval.benchmarks import BENCHMARKS, DEFAULT_INSTRUCTION, split_benchmark_names
from egrsd.eval.config import EvalConfig
from egrsd.eval.run import evaluate, format_outputs, format_summary


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="egrsd-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory, Hub id, or testbed:base / testbed:random")
    parser.add_argument(
        "--benchmarks",
        required=True,
        help=f"comma-separated: {', '.join(BENCHMARKS)}, or local files path.jsonl[:problem=col,answer=col,id=col]",
    )
    parser.add_argument("--num-samples", type=int, default=1, help="samples per problem (K)")
    parser.add_argument("--max-new-tokens", type=int, default=4096, help="token budget per completion")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--top-k", type=int, default=20, help="0 disables top-k")
    parser.add_argument("--backend", choices=("vllm", "transformers"), default=None, help="default: vllm on GPU")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--data-parallel-size", type=int, default=1, help="vLLM engine replicas")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generate call (transformers)")
    parser.add_argument("--max-problems", type=int, default=None, help="first N problems per benchmark")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help="default: outputs/eval/<model>-budget<B>-k<K>")
    parser.add_argument("--enable-thinking", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--system-prompt", default=None)
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION, help="appended to each problem")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM")
    parser.add_argument("--max-model-len", type=int, default=None, help="vLLM context length")
    return parser


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    values = vars(args).copy()
    values["benchmarks"] = split_benchmark_names(values["benchmarks"])
    return EvalConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: Sequence[str] | None) -> None:
    results = evaluate(config_from_args(build_parser().parse_args(argv)))
    print(format_summary(results))
    print(format_outputs(results))


if __name__ == "__main__":
    sys.exit(main())
