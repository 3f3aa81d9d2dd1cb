"""Training entry point (`egrsd-train`): a recipe YAML in, a trained model out.

accelerate launch --config_file launch/accelerate/zero3.yaml -m egrsd.train --config recipes/Qwen3-8B/egrsd/config.yaml
egrsd-train --config recipes/tiny/egrsd/config.yaml
"""

import logging
import os
import sys

from trl import ModelConfig, get_peft_config, get_quantization_config

from egrsd.cli import Interrupted, UserError, one_line, run_cli
from egrsd.configs import EGRSDConfig, EGRSDScriptArguments, make_parser
from egrsd.recipe_data import load_datasets
from egrsd.testbed import TESTBED_MODELS, testbed_model_path


logger = logging.getLogger(__name__)


def resolve_model(model_args: ModelConfig, training_args: EGRSDConfig) -> str:
    """A loadable model path: the recipe's, or the embedded testbed model written once under the output dir."""
    name = model_args.model_name_or_path
    if name not in TESTBED_MODELS:
        return name
    path = testbed_model_path(
        name, training_args.output_dir, seed=training_args.seed, write=training_args.process_index == 0
    )
    training_args.distributed_state.wait_for_everyone()
    return str(path)


def train(script_args: EGRSDScriptArguments, training_args: EGRSDConfig, model_args: ModelConfig):
    import transformers
    from packaging.version import Version
    from transformers import AutoTokenizer

    from egrsd.recipe_data import check_loaded_data
    from egrsd.rewards import get_reward_funcs
    from egrsd.teacher_budget import check_teacher_budget
    from egrsd.trainer import EGRSDTrainer

    reward_funcs = get_reward_funcs(
        script_args.reward_funcs, max_completion_length=training_args.max_completion_length
    )
    # The data before the model: a set that is empty, unreachable, or has columns the rewards cannot take is said
    # before any weights load.
    train_dataset, eval_dataset = load_datasets(script_args, training_args)
    check_loaded_data(reward_funcs, script_args.reward_funcs, train_dataset, eval_dataset)
    model_path = resolve_model(model_args, training_args)
    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    quantization_config = get_quantization_config(model_args)
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = {k: v for k, v in model_init_kwargs.items() if v is not None}

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
        )
    except OSError as error:  # not on the Hub, offline, or a folder without tokenizer files
        raise UserError(
            f"cannot load the tokenizer of {model_path!r} ({one_line(error)[:300]})",
            "pass a model folder with its tokenizer files, or a Hub id this machine can download",
        ) from None
    tokenizer.padding_side = "left"
    if training_args.needs_teacher:
        check_teacher_budget(model_path, tokenizer, train_dataset, training_args)

    trainer = EGRSDTrainer(
        model=model_path,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=quantization_config,
    )
    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "yes", "1"):
        resume = True  # the latest checkpoint in output_dir (a path also works)
    try:
        trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt:
        close_progress_bars(trainer)
        raise Interrupted(where_training_stopped(trainer.state, training_args)) from None
    except UserError:  # a reward function's mistake, found when it returned
        close_progress_bars(trainer)
        raise
    # Every rank reports: under ZeRO-3 it holds a shard only, and it must have run the teacher like the others.
    local_elements = sum(p.numel() for p in trainer.model.parameters())
    all_elements = sum(getattr(p, "ds_numel", p.numel()) for p in trainer.model.parameters())
    passes = trainer.teacher.scoring_passes if trainer.teacher else 0
    print(
        f"[rank {training_args.process_index}] finished {trainer.state.global_step} steps; teacher scoring passes: "
        f"{passes}; parameter elements on this rank: {local_elements} of {all_elements}",
        flush=True,
    )
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the logged metrics of every step
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    if Version(transformers.__version__) >= Version("5.18.0"):
        trainer.end()
    return trainer


def close_progress_bars(trainer) -> None:
    """End the progress bars of a run stopped midway, so that the line saying why starts a line of its own."""
    for callback in trainer.callback_handler.callbacks:
        for name in ("training_bar", "prediction_bar"):
            bar = getattr(callback, name, None)
            if bar is not None:
                bar.close()
                setattr(callback, name, None)


def where_training_stopped(state, training_args: EGRSDConfig) -> str:
    """After Ctrl-C: the step training stopped at, and how to go on from its last checkpoint (or that it has none)."""
    from transformers.trainer_utils import get_last_checkpoint

    from egrsd.check import checkpoint_complete

    stopped = f"training stopped at step {state.global_step} of {state.max_steps}"
    output_dir = training_args.output_dir
    checkpoint = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if checkpoint is None:
        return (
            f"{stopped}; no checkpoint was saved (save_strategy: {training_args.save_strategy}) — run it again from "
            "the start; with save_strategy: steps and save_steps a run can be resumed"
        )
    if not checkpoint_complete(checkpoint):
        return (
            f"{stopped} while saving {checkpoint}, which is incomplete — delete that folder, then resume from the "
            "checkpoint before it (if any) with the same command and --resume_from_checkpoint true"
        )
    return (
        f"{stopped}; its last checkpoint is {checkpoint} — resume from it with the same command and "
        "--resume_from_checkpoint true (the steps after it run again, exactly as they would have)"
    )


def main(argv: list[str] | None = None) -> int:
    """The `egrsd-train` console script: 0 after a successful run, 2 with one `error:` line for a user's mistake."""
    return run_cli(_main, sys.argv[1:] if argv is None else list(argv))


def _main(argv: list[str]) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = make_parser()
    if "--check" in argv:
        from egrsd.check import run_check

        status = run_check(parser, argv)
        if status:
            raise SystemExit(status)
        return
    from egrsd.check import parse_recipe, validate_recipe

    script_args, training_args, model_args = parse_recipe(parser, argv)
    validate_recipe(script_args, training_args, model_args)
    train(script_args, training_args, model_args)


if __name__ == "__main__":
    sys.exit(main())
