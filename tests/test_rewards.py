import math
import multiprocessing
import random
import string
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import FIXTURES

from egrsd.rewards import (
    REWARD_REGISTRY,
    accuracy_reward,
    extract_final_answer,
    format_reward,
    get_reward_funcs,
    grade,
    grade_batch,
    known_reward_names,
    length_penalty_reward,
    make_reward,
    verifier,
)
from egrsd.rewards.verifier import GradingWorker, exponent_nesting


def think(answer_text: str) -> str:
    return f"<think>\nLet me work this out carefully.\n</think>\n\nThe final answer is ${answer_text}$."


def boxed(answer: str) -> str:
    return think("\\boxed{" + answer + "}")


# (completion, gold, expected score); expectations are the mathematical verdicts.
GRADING_CASES = [
    # equivalent forms
    (boxed(r"\frac{1}{2}"), "0.5", 1.0),
    (boxed("0.5"), r"\frac{1}{2}", 1.0),
    (boxed(r"\dfrac{3}{4}"), "0.75", 1.0),
    (boxed(r"\tfrac{3}{4}"), r"\frac34", 1.0),
    (boxed(r"\frac12"), r"\dfrac{1}{2}", 1.0),
    (boxed(r"\frac{7}{2}"), "3.5", 1.0),
    (boxed("-0.25"), r"-\frac{1}{4}", 1.0),
    (boxed("[0, 1)"), "[0,1)", 1.0),
    (boxed(r"(-\infty, 2]"), r"(-\infty,2]", 1.0),
    (boxed(r"\{1, 2, 3\}"), r"\{3,2,1\}", 1.0),
    (boxed("(2, -1)"), "(2,-1)", 1.0),
    (boxed(r"30^\circ"), "30", 1.0),
    (boxed("30"), r"30^{\circ}", 1.0),
    (boxed(r"50\%"), "50", 1.0),
    (boxed("0.5"), r"50\%", 1.0),
    (boxed(r"5\text{ cm}"), "5", 1.0),
    (boxed(r"12 \text{ dollars}"), "12", 1.0),
    (boxed(r"\$18.90"), "18.90", 1.0),
    (boxed("-3"), "-3", 1.0),
    (boxed(r"-\frac{2}{3}"), "-2/3", 1.0),
    (boxed("1,000"), "1000", 1.0),
    (boxed("1{,}000{,}000"), "1000000", 1.0),
    (boxed(r"1\,000"), "1000", 1.0),  # math-verify alone reads 1\,000 as 1*000; normalized first
    (boxed(r"2\sqrt{3}"), r"\sqrt{12}", 1.0),
    (boxed(r"\frac{\sqrt{2}}{2}"), r"\frac{1}{\sqrt2}", 1.0),
    (boxed(r"\sqrt[3]{8}"), "2", 1.0),
    (boxed("x^2+2x+1"), "(x+1)^2", 1.0),
    (boxed("x = 3"), "3", 1.0),
    (boxed(r"\pi/6"), r"\frac{\pi}{6}", 1.0),
    (boxed("2^{10}"), "1024", 1.0),
    (boxed(r"\text{(B)}"), "B", 1.0),
    (boxed("7"), r"\boxed{7}", 1.0),  # boxed gold
    (boxed(r"\frac13"), r"$\frac{1}{3}$", 1.0),  # $-wrapped gold
    # wrong answers
    (boxed("3"), "-3", 0.0),
    (boxed("-2"), "2", 0.0),
    (boxed("0.33"), r"\frac13", 0.0),
    (boxed("(0, 1]"), "[0,1)", 0.0),
    (boxed(r"\{1,2\}"), r"\{1,2,3\}", 0.0),
    (boxed("(1, 2)"), "(2, 1)", 0.0),
    (boxed(r"\pi"), "3.14", 0.0),
    (boxed("x^2+1"), "(x+1)^2", 0.0),
    (boxed("1001"), "1000", 0.0),
    (boxed(r"2\sqrt{2}"), r"\sqrt{12}", 0.0),
    (boxed(r"50\%"), "5", 0.0),
    # where the answer is
    ("<think>So it is \\boxed{5}.</think>\nI am not sure.", "5", 0.0),  # only inside the thinking block
    ("<think>So it is \\boxed{5}.", "5", 0.0),  # thinking never closed
    ("The answer is \\boxed{5}.", "5", 0.0),  # no thinking block at all
    # several boxes are read together (math-verify's reading): two candidates for a scalar gold score 0
    ("<think>x</think> First \\boxed{4}, no wait, \\boxed{5}.", "5", 0.0),
    ("<think>x</think> First \\boxed{5}, no wait, \\boxed{4}.", "5", 0.0),
    ("<think>x</think> So x = \\boxed{1} and y = \\boxed{2}.", "(1, 2)", 1.0),
    ("<think>x</think> \\boxed{5}, that is \\boxed{5}.", "5", 1.0),
    ("<think>a \\boxed{4}</think> b </think> \\boxed{5}", "5", 1.0),  # after the LAST </think>
    ("<think>x</think> \\boxed{5", "5", 0.0),  # last box unterminated
    ("<think>x</think> so \\boxed 5.", "5", 1.0),  # brace-less \boxed token
    ("</think>\n\n\\boxed{12}", "12", 1.0),  # <think> opened by the chat template
    ("", "5", 0.0),
]


CASE_IDS = [f"{i:02d}-{gold}" for i, (_, gold, _) in enumerate(GRADING_CASES)]


@pytest.mark.parametrize(("completion", "gold", "expected"), GRADING_CASES, ids=CASE_IDS)
def test_grade_table(completion, gold, expected):
    score, _ = grade(completion, gold)
    assert score == expected


def test_grade_batch_matches_single_grades():
    completions = [c for c, _, _ in GRADING_CASES]
    golds = [g for _, g, _ in GRADING_CASES]
    assert [score for score, _ in grade_batch(completions, golds)] == [e for _, _, e in GRADING_CASES]


def test_unparseable_gold_is_skipped_for_every_completion():
    assert grade(boxed("5"), "") == (None, "5")
    assert grade("no thinking block", "") == (None, None)
    assert accuracy_reward([boxed("5"), "<think>open"], answer=["", None]) == [None, None]


def test_extract_final_answer():
    assert extract_final_answer(boxed(r"\frac{1}{2}")) == r"\frac{1}{2}"
    assert extract_final_answer("<think>a</think> \\boxed{\\{1,2\\}} and then \\boxed{ 7 }") == "\\{1,2\\}, 7"
    assert extract_final_answer("<think>a</think> \\boxed{7} and then \\boxed{7 }") == "7"
    assert extract_final_answer("<think>a</think> \\boxed{7} and then \\boxed{8") is None
    assert extract_final_answer("<think>\\boxed{3}</think> no box here") is None
    assert extract_final_answer("<think>\\boxed{3}") is None
    assert extract_final_answer("<think>a</think> \\boxed{}") is None
    assert extract_final_answer("<think>a</think> \\boxed{x^{2}") is None


def test_conversational_completions_and_parsed_reasoning():
    plain = [{"role": "assistant", "content": boxed("5")}]
    # transformers' response parsing moves the thinking block into `reasoning_content`
    parsed = [{"role": "assistant", "reasoning_content": "I think \\boxed{4}", "content": "So \\boxed{5}."}]
    unclosed = [{"role": "assistant", "content": "<think>still thinking \\boxed{5}"}]
    assert accuracy_reward([plain, parsed, unclosed], answer=["5", "5", "5"]) == [1.0, 1.0, 0.0]


def test_accuracy_reward_logs_extracted_answers_and_timeouts():
    logged, metrics = {}, {}
    scores = accuracy_reward(
        [boxed("5"), "<think>x"],
        answer=["5", "5"],
        log_extra=lambda name, values: logged.setdefault(name, values),
        log_metric=lambda name, value: metrics.setdefault(name, value),
    )
    assert scores == [1.0, 0.0]
    assert logged == {"extracted_answer": ["5", ""]}
    assert metrics == {"grader/timeouts": 0.0, "grader/past_deadline": 0.0}


# --- time bounds -----------------------------------------------------------------------------------------------------

_random = random.Random(0)
_NOISE = "".join(_random.choice(string.printable) for _ in range(100_000))
PATHOLOGICAL = {
    "tower5": boxed("9^{9^{9^{9^{9}}}}"),
    "tower3": boxed("9^{9^{9}}"),
    "huge_power": boxed("2^{100000000}"),
    "random_100kB_after_think": "<think>x</think>" + _NOISE,
    "random_100kB_boxed": "<think>x</think>\\boxed{" + _NOISE.replace("{", "(").replace("}", ")") + "}",
    "unbalanced_braces": "<think>x</think> \\boxed{\\frac{1}{2}}}} {{{ \\boxed{\\frac{{1}{2}",
    "boxed_at_end": "<think>x</think> The answer is \\boxed{",
    "many_open_boxes": "<think>x</think>" + "\\boxed{" * 20_000,
}


def _timed_grade(completion: str, gold: str) -> tuple[float | None, float]:
    start = time.monotonic()
    score, _ = grade(completion, gold)
    return score, time.monotonic() - start


@pytest.mark.parametrize("case", sorted(PATHOLOGICAL))
def test_pathological_answers_are_bounded_on_main_thread(case):
    assert threading.current_thread() is threading.main_thread()
    score, seconds = _timed_grade(PATHOLOGICAL[case], "5")
    assert score == 0.0
    assert seconds < 10


@pytest.mark.parametrize("case", sorted(PATHOLOGICAL))
def test_pathological_answers_are_bounded_on_worker_thread(case):
    # A different gold than the main-thread test, so the verdict cache cannot answer for the worker.
    with ThreadPoolExecutor(max_workers=1) as pool:
        score, seconds = pool.submit(_timed_grade, PATHOLOGICAL[case], "6").result(timeout=30)
    assert score == 0.0
    assert seconds < 10


def test_exponent_nesting():
    assert exponent_nesting("12") == 0
    assert exponent_nesting("2^{10}") == 1
    assert exponent_nesting("x^2 + y^2") == 1
    assert exponent_nesting("2^{2^{5}}") == 2
    assert exponent_nesting("2^2^5") == 2
    assert exponent_nesting("9**9**9") == 2
    assert exponent_nesting("9^{9^{9^{9}}}") == 3
    assert exponent_nesting("e^{x^{2}} + 3^{4}") == 2


def test_stuck_worker_is_killed_and_replaced():
    # The caller's deadline (budget + margin = 2 s) is shorter than the worker's own budget, as for work stuck in C.
    worker = GradingWorker(budget=10.0, kill_margin=-8.0)
    try:
        start = time.monotonic()
        results = worker.grade([("9^{9^{9}}", "5"), ("3", "3.0")])
        assert time.monotonic() - start < 10
        assert results == [(0.0, "killed"), (1.0, "ok")]
        assert worker.restarts == 1
    finally:
        worker.close()


def test_interrupted_batch_discards_the_worker(monkeypatch):
    # Verdicts left unread in the pipe must never be taken for the next batch's.
    worker = GradingWorker()
    try:
        assert worker.grade([("\\frac{1}{2}", "0.5")]) == [(1.0, "ok")]

        def interrupted(pending, results):
            raise KeyboardInterrupt

        monkeypatch.setattr(worker, "_collect", interrupted)
        with pytest.raises(KeyboardInterrupt):
            worker.grade([("\\frac{1}{3}", "0.5")])
        assert worker._process is None
        monkeypatch.undo()
        assert worker.grade([("\\frac{1}{4}", "0.25")]) == [(1.0, "ok")]
    finally:
        worker.close()


def test_large_batches_are_shared_among_workers(monkeypatch):
    extra = GradingWorker()
    workers = [verifier._workers[0], extra]
    monkeypatch.setattr(verifier, "_workers", workers)
    try:
        scores = grade_batch([boxed(f"\\frac{{{n}}}{{4}}") for n in range(16)], [f"{n / 4}" for n in range(16)])
        assert [score for score, _ in scores] == [1.0] * 16
        assert all(worker._process is not None for worker in workers)
    finally:
        extra.close()


def test_grading_across_threads_at_once():
    completions = [boxed(str(n)) for n in range(16)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        scores = list(pool.map(lambda n: grade(completions[n], str(n))[0], range(16)))
    assert scores == [1.0] * 16


def _grade_in_child(queue):
    queue.put(grade(boxed(r"\frac{2}{4}"), "0.5"))


def test_grading_in_forked_daemon_process():
    # A DataLoader worker is a daemonic forked process; it must start its own grading worker, not share the parent's.
    grade(boxed("1"), "1")  # the parent's worker is running when the fork happens
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_grade_in_child, args=(queue,), daemon=True)
    child.start()
    try:
        assert queue.get(timeout=60) == (1.0, r"\frac{2}{4}")
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0
    assert grade(boxed("2"), "2") == (1.0, "2")  # the parent's worker still answers


def _process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.startswith("State:") and "Z" in line for line in status)  # a zombie has exited
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("ending", ["normal_exit", "killed"])
def test_worker_does_not_outlive_its_owner(ending):
    script = textwrap.dedent(
        """
        import sys, time
        from egrsd.rewards import grade, verifier
        grade("<think>x</think> \\\\boxed{1}", "1.0")
        print(verifier._workers[0]._process.pid, flush=True)
        if sys.argv[1] == "killed":
            time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script, ending], stdout=subprocess.PIPE, text=True)
    worker_pid = int(owner.stdout.readline())
    if ending == "killed":
        owner.kill()
    owner.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not _process_gone(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _process_gone(worker_pid)


# --- format and length rewards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>\nreasoning\n</think>\n\nSo \\boxed{5}.", 1.0),
        ("reasoning\n</think>\n\n\\boxed{5}", 1.0),  # <think> came from the chat template
        ("<think>a</think><think>b</think> \\boxed{5}", 0.0),  # two blocks
        ("<think>a</think> \\boxed{5} or \\boxed{6}", 0.0),  # two answers
        ("<think>a \\boxed{5}</think> five", 0.0),  # answer only inside the thinking block
        ("<think>a</think> \\boxed{5", 0.0),  # unterminated
        ("<think>a</think> \\boxed{}", 0.0),  # empty
        ("<think>a \\boxed{5}", 0.0),  # never closed
        ("\\boxed{5}", 0.0),
        ("preamble <think>a</think> \\boxed{5}", 0.0),
        ("", 0.0),
    ],
)
def test_format_reward(completion, expected):
    assert format_reward([completion]) == [expected]
    assert format_reward([[{"role": "assistant", "content": completion}]]) == [expected]


def test_length_penalty_on_a_hand_built_group():
    # One prompt, four rollouts of 10/20/30/50 tokens: lambda = 0.5 - (len - 10) / 40 = 0.5, 0.25, 0, -0.5.
    completions = [boxed("4"), boxed("3"), boxed("4"), boxed("4")]
    rewards = length_penalty_reward(
        completions,
        answer=["4"] * 4,
        prompts=[[{"role": "user", "content": "2+2?"}]] * 4,
        completion_ids=[[0] * 10, [0] * 20, [0] * 30, [0] * 50],
    )
    # correct -> lambda; wrong (the 20-token one) -> min(0, lambda) = 0
    assert rewards == [0.5, 0.0, 0.0, -0.5]


def test_length_penalty_groups_by_prompt_and_handles_equal_lengths():
    rewards = length_penalty_reward(
        [boxed("1"), boxed("1"), boxed("2"), boxed("9")],
        answer=["1", "1", "2", "2"],
        prompts=["p", "p", "q", "q"],
        completion_ids=[[0] * 5, [0] * 5, [0] * 10, [0] * 30],
    )
    assert rewards == [0.0, 0.0, 0.5, -0.5]


def test_length_penalty_is_none_for_unparseable_gold():
    assert length_penalty_reward([boxed("1")], answer=[""], prompts=["p"], completion_ids=[[0]]) == [None]


def test_trl_length_rewards_through_the_registry():
    cosine, overlong = get_reward_funcs(
        ["cosine_scaled(max_len=100)", "soft_overlong(max_completion_len=100, soft_punish_cache=20)"]
    )
    completions = [[{"role": "assistant", "content": boxed(answer)}] for answer in (r"\frac13", "2")]
    ids = [[1] * 50, [1] * 90]
    # correct at half of max_len: 0.5 + 0.25 * (1 + cos(pi/2)) = 0.75; wrong at 90: -0.5 - 0.25 * (1 + cos(0.9 pi))
    assert cosine(completions=completions, answer=[r"\frac{1}{3}"] * 2, completion_ids=ids) == pytest.approx(
        [0.75, -0.5 - 0.25 * (1 + math.cos(0.9 * math.pi))]
    )
    # 90 tokens is inside the 20-token cache before 100: (80 - 90) / 20
    assert overlong(completions=completions, completion_ids=ids) == [0.0, -0.5]
    assert overlong.__name__ == "soft_overlong_punishment_reward"
    assert cosine.__name__ == "cosine_scaled_reward"


def test_cosine_ignores_answers_inside_the_thinking_block():
    cosine = make_reward("cosine_scaled", max_len=100)
    completion = "<think>\\boxed{3}</think> I give up."
    assert cosine(completions=[completion], answer=["3"], completion_ids=[[1] * 100]) == [-0.5]


def test_max_completion_length_configures_length_rewards():
    cosine, overlong = get_reward_funcs(["cosine_scaled", "soft_overlong"], max_completion_length=1000)
    assert cosine.params["max_len"] == 1000
    assert overlong.params == {"max_completion_len": 1000, "soft_punish_cache": 200}
    # an explicit parameter wins, up to the trainer's length
    (overlong,) = get_reward_funcs(
        ["soft_overlong(max_completion_len=8, soft_punish_cache=0)"], max_completion_length=9
    )
    assert overlong.params == {"max_completion_len": 8, "soft_punish_cache": 0}
    # beyond it the reward's schedule is out of reach: refused, saying what it would do
    with pytest.raises(ValueError, match=r"max_completion_len=50 is above max_completion_length=9.*can never fire"):
        get_reward_funcs(["soft_overlong(max_completion_len=50, soft_punish_cache=0)"], max_completion_length=9)
    with pytest.raises(ValueError, match="completions use only the first 50% of its length scale"):
        get_reward_funcs(["cosine_scaled(max_len=18)"], max_completion_length=9)


# --- registry --------------------------------------------------------------------------------------------------------


def test_registry_names_and_function_names():
    assert known_reward_names() == ["accuracy", "cosine_scaled", "format", "length_penalty", "soft_overlong"]
    funcs = get_reward_funcs(["accuracy", "format"])
    assert funcs == [REWARD_REGISTRY["accuracy"], REWARD_REGISTRY["format"]]
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "format_reward"]
    assert all(callable(f) for f in REWARD_REGISTRY.values())


def test_unknown_name_lists_known_names_and_import_form():
    with pytest.raises(ValueError) as error:
        get_reward_funcs(["acuracy"])
    message = str(error.value)
    assert all(name in message for name in known_reward_names())
    assert "package.module:function" in message


def test_bad_parameters_are_reported():
    with pytest.raises(ValueError, match="takes no parameters"):
        get_reward_funcs(["format(strict=True)"])
    with pytest.raises(ValueError, match="bad parameters"):
        get_reward_funcs(["soft_overlong(max_len=3)"])
    with pytest.raises(ValueError, match="keyword=literal"):
        get_reward_funcs(["soft_overlong(100)"])


USER_REWARD_MODULE = """
def brevity_reward(completions, **kwargs):
    return [1.0 / (1 + len(c)) for c in completions]


def make_constant_reward(value=1.0):
    def constant_reward(completions, **kwargs):
        return [value] * len(completions)
    return constant_reward


class MatchReward:
    def __init__(self, target="yes"):
        self.target = target
        self.__name__ = "match_reward"

    def __call__(self, completions, **kwargs):
        return [float(self.target in c) for c in completions]
"""


def test_import_strings_load_user_rewards(tmp_path, monkeypatch):
    (tmp_path / "my_rewards_for_test.py").write_text(USER_REWARD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    brevity, constant, match = get_reward_funcs(
        [
            "my_rewards_for_test:brevity_reward",
            "my_rewards_for_test:make_constant_reward(value=0.25)",
            "my_rewards_for_test:MatchReward(target='ok')",
        ]
    )
    assert brevity.__name__ == "brevity_reward"
    assert brevity(["abc"]) == [0.25]
    assert constant(["a", "b"]) == [0.25, 0.25]
    assert match(["ok then", "no"]) == [1.0, 0.0]


def test_import_string_by_file_path(tmp_path):
    path = tmp_path / "file_rewards.py"
    path.write_text(USER_REWARD_MODULE)
    (reward,) = get_reward_funcs([f"{path}:brevity_reward"])
    assert reward(["a"]) == [0.5]


def test_import_string_errors_are_clear(tmp_path, monkeypatch):
    (tmp_path / "my_rewards_errors.py").write_text(USER_REWARD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        get_reward_funcs(["my_rewards_errors:missing"])
    with pytest.raises(ValueError, match="cannot import reward"):
        get_reward_funcs(["no_such_module_anywhere:reward"])
    with pytest.raises(ValueError, match="no reward file"):
        get_reward_funcs([str(tmp_path / "absent.py") + ":reward"])


def test_callables_pass_through():
    def my_reward(completions, **kwargs):
        return [0.0] * len(completions)

    assert get_reward_funcs([my_reward, "format"]) == [my_reward, format_reward]


def test_verdict_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(verifier, "CACHE_SIZE", 3)
    grade_batch([boxed(f"\\frac{{{n}}}{{7}}") for n in range(10)], [f"{n + 100}/7" for n in range(10)])
    assert len(verifier._cache) <= 3


# ------------------------------------------------------------------------------------------------- grading under load


def test_a_batch_past_its_deadline_scores_the_rest_0_and_says_so(monkeypatch):
    """Five answers of 1 s each with a 2.5 s allowance: two are graded, three score 0.0 as past the deadline, and the
    call returns at the deadline instead of after 5 s (the worker still busy with them is replaced)."""
    monkeypatch.setattr(verifier, "WORKER_SCRIPT", FIXTURES / "slow_grading_worker.py")
    worker = GradingWorker(budget=5.0, kill_margin=1.0)
    try:
        worker.start()
        worker._wait_ready()  # the deadline counts from the batch's send, not the worker's start-up
        started = time.monotonic()
        results = worker.grade([("sleep:1.0", "1")] * 5, allowance=2.5)
        elapsed = time.monotonic() - started
        assert results == [(1.0, "ok")] * 2 + [(0.0, "past_deadline")] * 3
        assert 2.4 <= elapsed < 4.5
        assert worker.grade([("quick", "1")]) == [(1.0, "ok")]  # a fresh worker grades the next batch
    finally:
        worker.close()


def test_cut_short_verdicts_are_not_cached(monkeypatch):
    """A verdict that timed out, was killed or ran past the deadline says nothing about the answer: graded again."""
    verdicts = iter([[(0.0, "timeout"), (0.0, "killed"), (0.0, "past_deadline"), (0.0, "ok")], [(1.0, "ok")] * 3])
    monkeypatch.setattr(verifier, "_grade_with_workers", lambda pairs: next(verdicts)[: len(pairs)])
    pairs = [(f"\\frac{{{i}}}{{7}}", f"{i}/7") for i in range(1, 5)]  # not decided by the text checks
    assert verifier.grade_pairs(pairs) == [(0.0, "timeout"), (0.0, "killed"), (0.0, "past_deadline"), (0.0, "ok")]
    assert verifier.grade_pairs(pairs) == [(1.0, "ok")] * 3 + [(0.0, "cached")]


def test_the_accuracy_reward_counts_answers_past_the_deadline(monkeypatch):
    monkeypatch.setattr(
        verifier, "_grade_with_workers", lambda pairs: [(0.0, "past_deadline")] * (len(pairs) - 1) + [(1.0, "ok")]
    )
    metrics = {}
    completions = [[{"role": "assistant", "content": f"<think>x</think>\\boxed{{\\sqrt{{{i}}}}}"}] for i in (2, 3)]
    scores = accuracy_reward(
        completions, answer=["\\sqrt{5}", "\\sqrt{3}"], log_metric=lambda key, value: metrics.__setitem__(key, value)
    )
    assert scores == [0.0, 1.0] and metrics["grader/past_deadline"] == 1.0
