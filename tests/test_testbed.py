"""The embedded testbed: chain-arithmetic generator, dataset rows, tokenizer round trip, the shipped base, the
builder."""

import json
import random

import pytest
import torch
from helpers import tiny_model_shape

from egrsd.teacher_prompts import DEFAULT_TEACHER_TEMPLATE, build_teacher_prompt
from egrsd.testbed import arithmetic
from egrsd.testbed.base import (
    BaseSettings,
    base_model_config,
    build_base,
    ensure_base,
    is_complete_base,
    load_base,
    read_base_info,
    shipped_base_path,
)
from egrsd.testbed.base_eval import generate
from egrsd.testbed.cli import main as cli_main
from egrsd.testbed.teacher_signal import completion_log_probs, token_segments
from egrsd.testbed.tokenizer import build_tokenizer


def problems(count=300, seed=0, held_out=False):
    return list(arithmetic.sample_problems(random.Random(seed), held_out=held_out, count=count))


def evaluate_chain(expression: str) -> int:
    total, sign, number = 0, 1, ""
    for char in expression + "+":
        if char.isdigit():
            number += char
        else:
            total += sign * int(number)
            sign, number = (1 if char == "+" else -1), ""
    return total


def test_problems_keep_intermediates_in_range_and_answer_is_right():
    for problem in problems(500):
        assert arithmetic.MIN_OPERATIONS <= len(problem.operators) <= arithmetic.MAX_OPERATIONS
        assert all(0 <= value <= arithmetic.MAX_VALUE for value in problem.intermediates)
        assert problem.answer == evaluate_chain(problem.expression)
        assert arithmetic.parse_problem(problem.question) == problem


def test_concise_completion_is_the_steps_then_the_boxed_answer():
    for problem in problems(100):
        completion = arithmetic.completion_text(problem, arithmetic.CONCISE)
        assert completion.startswith("<think>\n")
        assert completion.endswith(f"\n</think>\n\n\\boxed{{{problem.answer}}}")
        thinking = completion[len("<think>\n") : completion.index("\n</think>")]
        assert thinking == arithmetic.concise_derivation(problem)
        assert thinking.split("\n") == [step.text for step in problem.steps]
        assert not arithmetic.is_verbose(completion)
        assert arithmetic.extract_answer(completion) == str(problem.answer)


def test_verbose_completion_verifies_every_step_one_to_three_times():
    rng = random.Random(1)
    loop_counts = set()
    for problem in problems(200):
        completion = arithmetic.completion_text(problem, arithmetic.VERBOSE, rng)
        assert completion.startswith("<think>\n")
        assert completion.endswith(f"\n</think>\n\n\\boxed{{{problem.answer}}}")
        assert arithmetic.is_verbose(completion)
        lines = completion[len("<think>\n") : completion.index("\n</think>")].split("\n")
        step_indices = [i for i, line in enumerate(lines) if arithmetic.STEP_LINE.match(line)]
        assert [lines[i] for i in step_indices] == [step.text for step in problem.steps]
        for index, step in zip(step_indices, problem.steps):
            following = []
            for line in lines[index + 1 :]:
                if not line.startswith(arithmetic.VERIFICATION_PREFIXES):
                    break
                following.append(line)
            assert 1 <= len(following) <= arithmetic.MAX_VERIFICATION_LOOPS
            loop_counts.add(len(following))
            for line in following:
                # Each loop restates the step's numbers, arithmetically right.
                assert str(step.result) in line and str(step.right) in line
                equation = line.split(" ")[-2 if line.endswith("Correct.") or line.endswith("Yes.") else -1]
                left, right = equation.rstrip(".?").split("=")
                assert evaluate_chain(left) == int(right)
    assert loop_counts == {1, 2, 3}


def test_language_model_document_holds_steps_and_boxed_answer():
    rng = random.Random(2)
    for problem in problems(50):
        document = arithmetic.language_model_document(problem, rng)
        lines = document.split("\n")
        assert lines[0] == problem.expression and lines[-1] == f"\\boxed{{{problem.answer}}}"
        assert [line for line in lines if arithmetic.STEP_LINE.match(line)] == [s.text for s in problem.steps]
        assert sum(line.startswith(arithmetic.VERIFICATION_PREFIXES) for line in lines) <= 3


def test_dataset_rows_schema_and_disjoint_deterministic_splits(tmp_path):
    train = arithmetic.make_split("train", 300, seed=0)
    held_out = arithmetic.make_split("eval", 100, seed=0)
    for row in train + held_out:
        assert set(row) == {"prompt", "solution", "answer"}
        assert row["prompt"] == [{"role": "user", "content": row["prompt"][0]["content"]}]
        problem = arithmetic.parse_problem(row["prompt"][0]["content"])
        assert row["solution"] == arithmetic.concise_derivation(problem)
        assert row["answer"] == str(problem.answer)
    train_questions = {row["prompt"][0]["content"] for row in train}
    eval_questions = {row["prompt"][0]["content"] for row in held_out}
    assert len(train_questions) == 300 and len(eval_questions) == 100
    assert not train_questions & eval_questions
    # Disjoint across seeds too: the partition is a hash of the problem.
    other_seed = {row["prompt"][0]["content"] for row in arithmetic.make_split("train", 300, seed=5)}
    assert not other_seed & eval_questions
    assert arithmetic.make_split("eval", 100, seed=0) == held_out

    cli_main(["make-data", "--output-dir", str(tmp_path), "--num-train", "20", "--num-eval", "10", "--seed", "3"])
    written = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert written == arithmetic.make_split("train", 20, seed=3)
    assert len((tmp_path / "eval.jsonl").read_text().splitlines()) == 10


def test_tokenizer_round_trip_and_prompt_prefix_on_generated_traces():
    tokenizer = build_tokenizer()
    rng = random.Random(3)
    for problem in problems(50):
        row = arithmetic.dataset_row(problem)
        for style in (arithmetic.VERBOSE, arithmetic.CONCISE):
            completion = arithmetic.completion_text(problem, style, rng)
            ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
            assert tokenizer.unk_token_id not in ids
            assert tokenizer.decode(ids, skip_special_tokens=True) == completion
            for prompt in (row["prompt"], build_teacher_prompt(row["prompt"], row, DEFAULT_TEACHER_TEMPLATE)):
                head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
                full = tokenizer.apply_chat_template(
                    prompt + [{"role": "assistant", "content": completion}], tokenize=False
                )
                assert full.startswith(head)
                assert full[len(head) :] == completion[len("<think>\n") :] + "<|im_end|>\n"


def test_segments_and_forks_label_a_verbose_trace():
    tokenizer = build_tokenizer()
    completion = (
        "37+48=85\nLet me verify: 85-48=37. Correct.\nHmm, 37+48=85? Yes.\n85-15=70\n"
        "Wait, let me recheck: 85-15=70.\n</think>\n\n\\boxed{70}"
    )
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    segments = token_segments(tokenizer, ids)
    assert len(segments) == len(ids)
    first_line = len("37+48=85\n")
    assert set(segments[:first_line]) == {arithmetic.SEGMENT_STEP_FIRST}
    assert segments[first_line] == arithmetic.SEGMENT_VERIFY_FIRST
    second_loop = completion.index("Hmm")
    assert segments[second_loop] == arithmetic.SEGMENT_VERIFY_START_LATER
    assert segments[completion.index("85-15")] == arithmetic.SEGMENT_STEP_AFTER
    assert segments[completion.index("Wait")] == arithmetic.SEGMENT_VERIFY_START
    # The tail tokens: "</think>" (one token), "\n\n\\boxed{", "7", "0", "}", eos.
    assert segments[-4:-2] == [arithmetic.SEGMENT_ANSWER] * 2
    assert set(segments[-2:]) == {arithmetic.SEGMENT_OTHER}
    forks = arithmetic.fork_positions(completion)
    assert forks == [(first_line, True), (completion.index("Wait"), False)]


SHIPPED_REASON = "the embedded base is not shipped yet (run `egrsd-testbed build-base --ship`)"


@pytest.mark.skipif(read_base_info(shipped_base_path()) is None, reason=SHIPPED_REASON)
def test_shipped_base_matches_the_builder_settings():
    path = shipped_base_path()
    info = read_base_info(path)
    assert info["settings_hash"] == BaseSettings().settings_hash(), (
        "the shipped base was built with other settings than the builder's defaults; rebuild it with "
        "`egrsd-testbed build-base --ship`"
    )
    assert info["settings"] == BaseSettings().to_dict()
    assert is_complete_base(path, BaseSettings())
    assert ensure_base(settings=BaseSettings()) == path

    model, tokenizer = load_base()
    reference_tokenizer = build_tokenizer()
    assert tokenizer.get_vocab() == reference_tokenizer.get_vocab()
    assert tokenizer.chat_template == reference_tokenizer.chat_template
    assert (tokenizer.pad_token, tokenizer.eos_token) == ("<|endoftext|>", "<|im_end|>")
    assert "<think>" not in tokenizer.all_special_tokens and "</think>" not in tokenizer.all_special_tokens

    expected = base_model_config().to_dict()
    shipped = model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures", "use_cache"):
        expected.pop(key, None)
        shipped.pop(key, None)
    assert shipped == expected


@pytest.mark.skipif(read_base_info(shipped_base_path()) is None, reason=SHIPPED_REASON)
def test_shipped_base_answers_reference_conditioned_prompts_concisely():
    model, tokenizer = load_base()
    rows = arithmetic.make_split("eval", 8)
    prompts = [build_teacher_prompt(row["prompt"], row, DEFAULT_TEACHER_TEMPLATE) for row in rows]
    texts = tokenizer.batch_decode(generate(model, tokenizer, prompts, greedy=True, max_new_tokens=80))
    answers = [arithmetic.extract_answer(text) for text in texts]
    assert sum(a == row["answer"] for a, row in zip(answers, rows)) >= 5
    assert not any(arithmetic.is_verbose(text) for text in texts)


def test_builder_smoke_produces_a_loadable_cached_base(tmp_path):
    settings = BaseSettings(
        **tiny_model_shape(num_hidden_layers=1),
        lm_steps=2,
        lm_batch_size=2,
        lm_row_length=64,
        sft_steps=2,
        sft_batch_size=2,
    )
    path = tmp_path / "base"
    build_base(path, settings, progress=False, evaluate=False)
    assert is_complete_base(path, settings)
    assert read_base_info(path)["settings_hash"] == settings.settings_hash()
    assert not is_complete_base(path, settings.replace(seed=1))

    model, tokenizer = load_base(path)
    assert tokenizer.get_vocab() == build_tokenizer().get_vocab()
    assert model.config.hidden_size == 32 and model.config.use_cache

    # A cache hit returns the existing folder without training again.
    cached = tmp_path / "cache" / f"base-{settings.settings_hash()[:12]}"
    cached.parent.mkdir()
    path.rename(cached)
    assert ensure_base(tmp_path / "cache", settings) == cached

    row = arithmetic.make_split("eval", 1)[0]
    completion = tokenizer("12+3=15\n</think>\n\n\\boxed{15}", add_special_tokens=False)["input_ids"]
    prompt = tokenizer(
        tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )["input_ids"]
    (log_probs,) = completion_log_probs(model, [prompt], [completion])
    assert log_probs.shape == (len(completion), len(tokenizer))
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(len(completion)), atol=1e-4)


def test_settings_reject_unknown_keys_and_hash_changes_with_settings():
    with pytest.raises(ValueError, match="unknown base setting"):
        BaseSettings().replace(no_such_setting=1)
    assert BaseSettings().settings_hash() == BaseSettings().settings_hash()
    assert BaseSettings(lm_steps=999).settings_hash() != BaseSettings().settings_hash()
