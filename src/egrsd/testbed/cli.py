"""`egrsd-testbed`: write the synthetic datasets, build and inspect the verbose base model."""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from egrsd.cli import ArgumentParser, UserError, run_cli
from egrsd.testbed import arithmetic


def _parse_setting(text: str) -> tuple[str, object]:
    from egrsd.testbed.base import BaseSettings

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    fields = {f.name: f for f in dataclasses.fields(BaseSettings)}
    if key not in fields:
        raise argparse.ArgumentTypeError(f"unknown base setting {key!r}; known: {', '.join(fields)}")
    kind = type(getattr(BaseSettings(), key))
    return key, kind(value)


def make_data(args) -> None:
    paths = arithmetic.write_splits(args.output_dir, args.num_train, args.num_eval, args.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")


def build_base_command(args) -> None:
    from egrsd.testbed.base import BaseSettings, build_base, is_complete_base, shipped_base_path
    from egrsd.testbed.base_eval import format_evaluation

    changes = dict(args.set or [])
    for name in ("seed", "lm_steps", "sft_steps"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    settings = BaseSettings().replace(**changes)
    if args.ship:
        if settings != BaseSettings():
            raise UserError(
                "--ship writes the embedded default, which must use the default settings",
                "drop the overrides (--set, --seed, --lm-steps, --sft-steps) or drop --ship",
            )
        path = shipped_base_path()
    else:
        path = Path(args.output_dir) / f"base-{settings.settings_hash()[:12]}"
    if is_complete_base(path, settings) and not args.force:
        print(f"already built: {path} (pass --force to rebuild)")
        return
    print(f"building base {settings.settings_hash()[:12]} into {path}")
    start = time.perf_counter()
    build_base(path, settings, progress=True, evaluate=not args.no_eval, num_eval=args.num_eval, use_cpu=not args.gpu)
    info = json.loads((path / "base_settings.json").read_text())
    build = info["build"]
    print(
        f"built {path} in {time.perf_counter() - start:.0f} s (stage 1: {build['lm_seconds']:.0f} s, "
        f"stage 2: {build['sft_seconds']:.0f} s, {build['parameters']} parameters)"
    )
    if "evaluation" in info:
        print(f"held-out evaluation ({args.num_eval} problems):")
        print(format_evaluation(info["evaluation"]))


def eval_base(args) -> None:
    from egrsd.testbed.base import load_base, read_base_info
    from egrsd.testbed.base_eval import evaluate_base, format_evaluation

    model, tokenizer = load_base(args.base)
    template = _teacher_template(args.base, read_base_info)
    rows = arithmetic.make_split("eval", args.num_eval, seed=args.data_seed)
    start = time.perf_counter()
    result = evaluate_base(model, tokenizer, rows, template, seed=args.seed, max_new_tokens=args.max_new_tokens)
    print(f"{args.num_eval} held-out problems, {time.perf_counter() - start:.0f} s")
    print(format_evaluation(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def teacher_signal_command(args) -> None:
    from egrsd.testbed.base import load_base, read_base_info
    from egrsd.testbed.teacher_signal import format_forks, format_teacher_signal, teacher_signal

    model, tokenizer = load_base(args.base)
    template = _teacher_template(args.base, read_base_info)
    rows = arithmetic.make_split("eval", args.num_problems, seed=args.data_seed)
    signal = teacher_signal(
        model,
        tokenizer,
        rows,
        template,
        samples_per_problem=args.samples_per_problem,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
    )
    print(
        f"{signal['num_samples']} student samples (plain prompt, T=1), accuracy {signal['sampled_accuracy']:.3f}; "
        f"{signal['num_finished']} finished, {signal['num_verbose']} verbose, {signal['num_correct_verbose']} of "
        "them correct"
    )
    print("\nprobability of starting a verification loop at the line after a step line (student: plain prompt;")
    print("teacher: reference-conditioned prompt), on the student's samples:")
    print(format_forks(signal))
    for table, title in (("all_verbose", "all verbose samples"), ("correct_verbose", "correct verbose samples")):
        print(f"\nteacher (reference-conditioned prompt) vs student (plain prompt), {title}; log-probs and entropies")
        print("in nats per token, p = mean probability of the sampled token:")
        print(format_teacher_signal(signal, table))
    if args.json:
        Path(args.json).write_text(json.dumps(signal, indent=2) + "\n")


def _teacher_template(base, read_base_info) -> str:
    from egrsd.testbed.base import BaseSettings, shipped_base_path

    info = read_base_info(base or shipped_base_path()) or {}
    return info.get("settings", {}).get("teacher_template", BaseSettings().teacher_template)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="egrsd-testbed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("make-data", help="write train.jsonl and eval.jsonl (disjoint problems)")
    data.add_argument("--output-dir", required=True)
    data.add_argument("--num-train", type=int, default=2000)
    data.add_argument("--num-eval", type=int, default=200)
    data.add_argument("--seed", type=int, default=0)
    data.set_defaults(func=make_data)

    build = commands.add_parser("build-base", help="train the verbose base (cached by the hash of its settings)")
    build.add_argument("--output-dir", default="outputs/testbed", help="cache folder (the base goes in base-<hash>)")
    build.add_argument("--seed", type=int)
    build.add_argument("--lm-steps", type=int, help="stage 1 (language modelling) steps")
    build.add_argument("--sft-steps", type=int, help="stage 2 (chat SFT) steps")
    build.add_argument("--set", action="append", type=_parse_setting, metavar="KEY=VALUE", help="any base setting")
    build.add_argument("--ship", action="store_true", help="write the embedded default into the package assets")
    build.add_argument("--force", action="store_true", help="rebuild even when a matching base exists")
    build.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    build.add_argument("--num-eval", type=int, default=200)
    build.add_argument("--gpu", action="store_true", help="train on the accelerator (not bit-identical to CPU)")
    build.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    build.set_defaults(func=build_base_command)

    evaluate = commands.add_parser("eval-base", help="held-out accuracy, length and style of a base")
    evaluate.add_argument("--base", help="base folder (default: the shipped one)")
    evaluate.add_argument("--num-eval", type=int, default=200)
    evaluate.add_argument("--data-seed", type=int, default=0, help="seed of the eval split")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed")
    evaluate.add_argument("--max-new-tokens", type=int, default=512)
    evaluate.add_argument("--json", help="also write the numbers here")
    evaluate.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    evaluate.set_defaults(func=eval_base)

    signal = commands.add_parser("teacher-signal", help="per-segment teacher vs student on verbose samples")
    signal.add_argument("--base", help="base folder (default: the shipped one)")
    signal.add_argument("--num-problems", type=int, default=200)
    signal.add_argument("--samples-per-problem", type=int, default=1)
    signal.add_argument("--data-seed", type=int, default=0, help="seed of the eval split")
    signal.add_argument("--seed", type=int, default=0, help="sampling seed")
    signal.add_argument("--max-new-tokens", type=int, default=512)
    signal.add_argument("--json", help="also write the numbers here")
    signal.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    signal.set_defaults(func=teacher_signal_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    base = getattr(args, "base", None)
    if base is not None and not (Path(base) / "config.json").is_file():
        raise UserError(f"no testbed base in {base}", "pass a folder written by `egrsd-testbed build-base`")
    if getattr(args, "threads", None):
        import torch

        # On a shared CPU, fewer threads than cores is often much faster (threads wait on descheduled peers).
        torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
