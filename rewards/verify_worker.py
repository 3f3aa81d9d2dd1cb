"""The grading worker: a separate Python process that runs math-verify on (answer, gold) pairs.

Started and owned by `egrsd.rewards.verifier`; not imported by anything else. It is run as a script by file path, so it
depends on nothing but the standard library and math-verify.

Protocol (JSON lines; stdout carries nothing else, stray prints from libraries are sent to stderr):
  worker -> parent, once at start:  {"ready": true}
  parent -> worker, per batch:      {"pairs": [[answer, gold], ...], "budget": seconds}
  worker -> parent, per pair, in order, as soon as it is graded:  [index, verdict, status]
where verdict is 1.0, 0.0 or null (gold unparseable), status is "ok", "identical", "answer_unparseable",
"gold_unparseable", "timeout" or "error". A gold that parses to text only (no mathematics) is unparseable.

Each pair runs under its own wall-clock budget (a SIGALRM timer; this is the worker's main thread, so signals work,
and math-verify's own signal timeouts are switched off so the two never fight over the alarm). Work stuck inside C
code cannot be interrupted by a signal handler; the parent's hard deadline kills the whole worker for that, and a
CPU-time limit ends a stuck worker even if its parent died first.
"""

import json
import os
import signal
import sys


# Run as a script, this file's folder is first on sys.path; drop it so sibling modules can never shadow a library.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import logging  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import warnings  # noqa: E402


class _OverBudget(BaseException):
    """Raised by the alarm handler; a BaseException so library `except Exception` blocks cannot swallow it."""


_armed = False
WARM_UP_BUDGET_SECONDS = 0.5

# One of each kind of answer math-verify compares differently (numbers, radicals, constants, intervals, sets, tuples,
# polynomials, equations, units, percents, degrees).
WARM_UP_PAIRS = [
    ("0.5", "\\frac{1}{2}"),
    ("\\sqrt{12}", "2\\sqrt{3}"),
    ("\\frac{\\pi}{6}", "\\pi/6"),
    ("(1,5]", "[1,5)"),
    ("\\{3,1,2\\}", "\\{1,2,3\\}"),
    ("(2,-1)", "(2, -1)"),
    ("(x-1)(x+1)", "x^2-1"),
    ("x=3", "3"),
    ("30^\\circ", "30"),
    ("50\\%", "0.5"),
    ("5\\text{ cm}", "5"),
    ("2^{10}", "1024"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("y=2x+1", "2x+1"),
    ("\\log_2 8", "3"),
]


def _on_alarm(signum, frame):
    if _armed:
        raise _OverBudget


def _limit_cpu(seconds: float) -> None:
    # The kernel kills the process (SIGXCPU) once it has used `seconds` more CPU time, even inside C code.
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(spent + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def main() -> None:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="ascii")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Ctrl-C reaches the whole process group; the parent decides when this worker ends (it closes our stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    hard_seconds = float(os.environ.get("EGRSD_GRADER_CPU_LIMIT", "30"))

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # The default LaTeX normalization already strips units, \text{}, degree and dollar signs.
    latex_config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    plain_config = [ExprExtractionConfig()]
    parsed_golds: dict[str, list] = {}

    def parse_expression(text: str) -> list:
        # Wrapping in \boxed{} makes the whole string the extraction target, LaTeX or plain.
        parsed = parse("\\boxed{" + text + "}", extraction_config=latex_config, parsing_timeout=None)
        if not any(not isinstance(p, str) for p in parsed):
            # Plain-text maths LaTeX cannot read (e.g. "x**2+1"): try it as an expression before giving up.
            parsed = parse(text, extraction_config=plain_config, parsing_timeout=None) or parsed
        return parsed

    def is_mathematics(parsed: list) -> bool:
        # math-verify returns [expression, text] when it reads something, and only the text when it does not.
        return any(not isinstance(p, str) for p in parsed)

    def parse_gold(gold: str) -> list | None:
        try:
            parsed = parse_expression(gold)
        except Exception:
            return None
        return parsed if is_mathematics(parsed) else None

    def grade_pair(answer: str, gold: str) -> tuple[float | None, str]:
        if gold not in parsed_golds:
            if len(parsed_golds) > 50_000:
                parsed_golds.clear()
            parsed_golds[gold] = parse_gold(gold)
        gold_parsed = parsed_golds[gold]
        if gold_parsed is None:
            return None, "gold_unparseable"
        if "".join(answer.split()) == "".join(gold.split()):
            return 1.0, "identical"
        answer_parsed = parse_expression(answer)
        if not is_mathematics(answer_parsed):
            # Text only: nothing to compare (an answer identical to the gold was accepted above).
            return 0.0, "answer_unparseable"
        return float(verify(gold_parsed, answer_parsed, timeout_seconds=None)), "ok"

    def grade_within(answer: str, gold: str, budget: float) -> tuple[float | None, str]:
        global _armed
        _limit_cpu(budget + hard_seconds)
        try:
            try:
                _armed = True
                signal.setitimer(signal.ITIMER_REAL, budget)
                return grade_pair(answer, gold)
            finally:
                _armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _OverBudget:  # also when the alarm lands after grade_pair returned, before it was disarmed
            return 0.0, "timeout"
        except Exception:
            return 0.0, "error"

    protocol.write(json.dumps({"ready": True}) + "\n")
    stdin = sys.stdin.buffer
    warm_up = list(WARM_UP_PAIRS)
    while True:
        # While no request is waiting, grade warm-up pairs: sympy builds tables lazily, and without this the first
        # real batch is several times slower than later ones.
        # Each warm-up pair gets a short budget, so a request that arrives meanwhile waits at most that long, well
        # inside the caller's kill margin (`EGRSD_GRADER_KILL_MARGIN`, 2 s).
        if warm_up and not select.select([stdin], [], [], 0)[0]:
            grade_within(*warm_up.pop(), WARM_UP_BUDGET_SECONDS)
            continue
        line = stdin.readline()
        if not line:
            return
        request = json.loads(line)
        budget = float(request["budget"])
        for index, (answer, gold) in enumerate(request["pairs"]):
            verdict, status = grade_within(answer, gold, budget)
            protocol.write(json.dumps([index, verdict, status]) + "\n")


if __name__ == "__main__":
    main()
