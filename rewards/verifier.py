"""Time-bounded math-verify grading that is safe to call from any thread or process.

math-verify bounds its own work with SIGALRM, which only works on a process's main thread; off it (a trainer's reward
thread, an evaluation thread pool) it has no time limit at all, and a single answer such as `9^{9^{9^{9}}}` can then
hang the caller forever. So the maths runs in a persistent worker process (`rewards/verify_worker.py`) instead:

* the caller sends a whole batch of (answer, gold) pairs in one message and reads verdicts back one by one (a large
  batch is shared among a few workers, `EGRSD_GRADER_WORKERS`, default one per 8 CPUs up to 4);
* inside the worker, each pair runs under a wall-clock budget (a signal timer, legal there: it is that process's
  main thread), which ends almost every slow case with a 0.0 and no restart;
* the caller waits at most `budget + margin` seconds for each verdict; past that it kills the worker (the only way to
  stop work stuck inside C code), scores that pair 0.0, starts a fresh worker and resends the rest of the batch;
* a batch has a deadline, `EGRSD_GRADER_BATCH_SECONDS` (10) plus `EGRSD_GRADER_BATCH_SECONDS_PER_PAIR` (0.1) per
  pair, from its first send: several slow answers cannot stall a training step for budget x count seconds; the pairs
  still ungraded then score 0.0 with the status "past_deadline" (counted as `grader/past_deadline`);
* cheap text checks run first, in the caller: identical strings are correct, over-long answers and exponent towers
  are wrong without asking the worker, and verdicts are cached, since a group of rollouts often repeats an answer.
  A verdict cut short (timed out, killed, past the deadline) is not cached: on a busy machine a slow moment would
  otherwise mark a correct answer wrong for the rest of the run; the next batch grades it again.

The worker is a plain subprocess (not `multiprocessing`), so it can be started from a daemonic DataLoader worker and
never re-imports the caller's `__main__`. It exits when its stdin closes, i.e. when the owning process exits or dies;
a process forked from the owner forgets the inherited worker and starts its own.
"""

import atexit
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path


logger = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("verify_worker.py")
# Soft per-pair budget inside the worker, and the extra time the caller grants before it kills the worker.
BUDGET_SECONDS = float(os.environ.get("EGRSD_GRADER_BUDGET", "3"))
KILL_MARGIN_SECONDS = float(os.environ.get("EGRSD_GRADER_KILL_MARGIN", "2"))
# Importing sympy + math-verify and warming up takes a few seconds; a cold cluster filesystem can take much longer.
STARTUP_TIMEOUT_SECONDS = float(os.environ.get("EGRSD_GRADER_STARTUP_TIMEOUT", "180"))
# Real final answers are short; anything longer is scored 0.0 (answer) or treated as unparseable (gold) unread.
MAX_ANSWER_CHARS = 1000
# a^{b^{c}} is allowed (the worker's budget bounds it); one more level is never a sensible final answer.
MAX_EXPONENT_NESTING = 2
CACHE_SIZE = 100_000
# A batch's deadline: this many seconds, plus this many per pair, from its first send to a worker.
BATCH_SECONDS = float(os.environ.get("EGRSD_GRADER_BATCH_SECONDS", "10"))
BATCH_SECONDS_PER_PAIR = float(os.environ.get("EGRSD_GRADER_BATCH_SECONDS_PER_PAIR", "0.1"))
# Verdicts that say the grading was cut short, not what the answer is worth: never cached.
CUT_SHORT_STATUSES = ("timeout", "killed", "past_deadline")

_WHITESPACE = re.compile(r"\s+")
_INTEGER = re.compile(r"[+-]?\d+")


class GradingWorkerError(RuntimeError):
    """The grading worker could not be started at all (e.g. math-verify is not installed in this interpreter)."""


def exponent_nesting(text: str) -> int:
    """How deeply powers nest in `text`: 1 for `2^{10}`, 2 for `2^{2^{5}}` or `2^2^5`, 0 without a power."""
    text = text.replace("**", "^")
    group_levels: list[tuple[int, int]] = []  # (brace depth that closes the group, exponent level inside it)
    depth = deepest = 0
    chain_level = 0  # level of a bare exponent token just read, so `a^b^c` keeps climbing
    position = 0
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            chain_level = 0
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if group_levels and group_levels[-1][0] == depth:
                group_levels.pop()
            depth -= 1
        elif char == "^":
            level = max(group_levels[-1][1] if group_levels else 0, chain_level) + 1
            deepest = max(deepest, level)
            position += 1
            while position < len(text) and text[position] == " ":
                position += 1
            if position < len(text) and text[position] == "{":
                depth += 1
                group_levels.append((depth, level))
                chain_level = 0
                position += 1
                continue
            while position < len(text) and (text[position].isalnum() or text[position] == "."):
                position += 1
            chain_level = level
            continue
        if char != " ":
            chain_level = 0
        position += 1
    return deepest


class GradingWorker:
    """One worker process and the lock that serializes its use; restarts it after a crash or a kill."""

    def __init__(self, budget: float = BUDGET_SECONDS, kill_margin: float = KILL_MARGIN_SECONDS):
        self.budget = budget
        self.kill_margin = kill_margin
        self.restarts = 0
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._ready = False
        self._buffer = b""
        self._has_worked = False
        self._deadline: float | None = None

    def start(self) -> None:
        """Start the worker in the background if it is not running; returns without waiting for it."""
        with self._lock:
            self._spawn_if_needed()

    def close(self) -> None:
        """Stop the worker: closing its stdin lets it exit on its own; kill it if it does not within a second."""
        with self._lock:
            self._stop(graceful=True)

    def grade(
        self, pairs: Sequence[tuple[str, str]], allowance: float | None = None
    ) -> list[tuple[float | None, str]]:
        """Verdict and status for each (answer, gold) pair; raises only `GradingWorkerError` (worker never started).

        `allowance`: seconds the whole batch may take from its first send (default: the batch deadline of
        `BATCH_SECONDS` + `BATCH_SECONDS_PER_PAIR` per pair); pairs still ungraded then get (0.0, "past_deadline").
        """
        if allowance is None:
            allowance = BATCH_SECONDS + BATCH_SECONDS_PER_PAIR * len(pairs)
        results: list[tuple[float | None, str]] = [(None, "unavailable")] * len(pairs)
        pending = list(range(len(pairs)))
        failed_sends = 0
        self._deadline = None
        with self._lock:
            while pending and failed_sends < 2:
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    for i in pending:
                        results[i] = (0.0, "past_deadline")
                    break
                try:
                    self._wait_ready()
                except GradingWorkerError:
                    if not self._has_worked:
                        raise
                    logger.error("the grading worker could not be restarted; %d answers left ungraded", len(pending))
                    return results
                if self._deadline is None:
                    self._deadline = time.monotonic() + allowance
                try:
                    self._send({"pairs": [pairs[i] for i in pending], "budget": self.budget})
                except OSError:
                    self._stop(graceful=False)  # it died between batches; the next round starts a fresh one
                    failed_sends += 1
                    continue
                failed_sends = 0
                try:
                    done = self._collect(pending, results)
                except BaseException:
                    # Interrupted mid-batch (e.g. KeyboardInterrupt): the worker's unread verdicts would be taken for
                    # the next batch's, so it has to go.
                    self._stop(graceful=False)
                    raise
                pending = pending[done:]
        return results

    def _collect(self, pending: list[int], results: list[tuple[float | None, str]]) -> int:
        """Read the verdicts of the batch just sent; returns how many pairs are settled (all, or up to a kill)."""
        for done, pair_index in enumerate(pending):
            message = self._read_message(min(time.monotonic() + self.budget + self.kill_margin, self._deadline))
            if message is None and time.monotonic() >= self._deadline:
                # The batch's time is up: the worker is still busy with its pairs, so it goes, and they score 0.0.
                for i in pending[done:]:
                    results[i] = (0.0, "past_deadline")
                logger.warning("grading ran past the batch deadline; %d answers scored 0.0", len(pending) - done)
                self._stop(graceful=False)
                self.restarts += 1
                return len(pending)
            if not (isinstance(message, list) and len(message) == 3 and message[0] == done):
                # Stuck (beyond the worker's own timer) or crashed on this pair: score it and start over.
                results[pair_index] = (0.0, "killed")
                logger.warning("grading one answer took too long or crashed the grading worker; scored 0.0")
                self._stop(graceful=False)
                self.restarts += 1
                return done + 1
            _, verdict, status = message
            results[pair_index] = (verdict, status)
            self._has_worked = True
        return len(pending)

    def forget_after_fork(self) -> None:
        # The forked child shares the parent's pipes: using them would interleave two conversations with one worker.
        self._lock = threading.Lock()
        if self._process is not None:
            for stream in (self._process.stdin, self._process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        self._process = None
        self._ready = False
        self._buffer = b""

    def _spawn_if_needed(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        if self._process is not None:
            self._stop(graceful=False)
        if not sys.executable:
            raise GradingWorkerError("cannot start the grading worker: sys.executable is not set")
        try:
            self._process = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
            )
        except OSError as error:
            raise GradingWorkerError(f"cannot start the grading worker: {error}") from error
        self._ready = False
        self._buffer = b""

    def _wait_ready(self) -> None:
        self._spawn_if_needed()
        if self._ready:
            return
        message = self._read_message(time.monotonic() + STARTUP_TIMEOUT_SECONDS)
        if message != {"ready": True}:
            code = self._process.poll() if self._process is not None else None
            self._stop(graceful=False)
            raise GradingWorkerError(
                f"the grading worker ({WORKER_SCRIPT.name}) did not start (exit code {code}); its error, if any, is "
                f"on stderr above. Check that math-verify is installed for {sys.executable}."
            )
        self._ready = True

    def _send(self, request: dict) -> None:
        data = (json.dumps(request) + "\n").encode("ascii")
        view = memoryview(data)
        while view:
            written = os.write(self._process.stdin.fileno(), view)
            view = view[written:]

    def _read_message(self, deadline: float):
        """The next JSON line from the worker, or None if none arrives by `deadline` or the worker has exited."""
        stream = self._process.stdout.fileno()
        # poll, not select: a trainer can hold over 1024 file descriptors, select's limit.
        poller = select.poll()
        poller.register(stream, select.POLLIN)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return None
            chunk = os.read(stream, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            return None

    def _stop(self, graceful: bool) -> None:
        process, self._process = self._process, None
        self._ready = False
        self._buffer = b""
        if process is None:
            return
        try:
            process.stdin.close()
            if graceful:
                process.wait(timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def _default_worker_count() -> int:
    # Verifying a wrong symbolic answer costs math-verify 10-30 ms, so a batch of a few hundred pairs is worth
    # spreading; a few workers per trainer process is plenty and leaves the CPUs to data loading.
    configured = int(os.environ.get("EGRSD_GRADER_WORKERS", "0"))
    return configured if configured > 0 else min(4, max(1, (os.cpu_count() or 1) // 8))


# Below this many pairs per worker, the batch goes to one worker: a round-trip costs well under a millisecond.
MIN_PAIRS_PER_WORKER = 8

_workers = [GradingWorker() for _ in range(_default_worker_count())]
_cache: OrderedDict[tuple[str, str], float | None] = OrderedDict()
# Golds the worker has parsed to mathematics (verdict statuses that say so), for the "identical" shortcut.
_parseable_golds: OrderedDict[str, None] = OrderedDict()
PARSED_GOLD_STATUSES = ("ok", "identical", "answer_unparseable")
_cache_lock = threading.Lock()


def start_workers() -> None:
    """Start the grading workers in the background, so their few seconds of start-up overlap with other set-up."""
    for worker in _workers:
        worker.start()


def close_workers() -> None:
    """Stop the grading workers (they start again on the next grading call)."""
    for worker in _workers:
        worker.close()


def _forget_workers_after_fork() -> None:
    for worker in _workers:
        worker.forget_after_fork()


os.register_at_fork(after_in_child=_forget_workers_after_fork)
atexit.register(close_workers)


def _grade_with_workers(pairs: list[tuple[str, str]]) -> list[tuple[float | None, str]]:
    shares = max(1, min(len(_workers), len(pairs) // MIN_PAIRS_PER_WORKER))
    allowance = BATCH_SECONDS + BATCH_SECONDS_PER_PAIR * len(pairs)  # one deadline for the batch, whatever its shares
    if shares == 1:
        return _workers[0].grade(pairs, allowance)
    # Interleaved shares: a group's rollouts sit next to each other and cost alike, so this balances the load.
    outcomes: list[list[tuple[float | None, str]] | BaseException | None] = [None] * shares

    def grade_share(share: int) -> None:
        try:
            outcomes[share] = _workers[share].grade(pairs[share::shares], allowance)
        except BaseException as error:  # re-raised in the caller's thread below
            outcomes[share] = error

    threads = [threading.Thread(target=grade_share, args=(share,), daemon=True) for share in range(shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results: list[tuple[float | None, str]] = [(None, "unavailable")] * len(pairs)
    for share, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            raise outcome
        results[share::shares] = outcome
    return results


def _canonical_integer(text: str) -> str:
    """An integer literal without its sign's `+` and leading zeros: compared as text, so any length is exact."""
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-").lstrip("0") or "0"
    return ("" if digits == "0" else sign) + digits


def precheck(answer: str, gold: str) -> tuple[float | None, str] | None:
    """A verdict decided from the text alone, or None when math-verify has to look at the pair."""
    if not gold or len(gold) > MAX_ANSWER_CHARS:
        return None, "gold_unparseable"
    gold_is_integer = _INTEGER.fullmatch(gold) is not None
    if _INTEGER.fullmatch(answer) and gold_is_integer:
        # Most competition answers are integers; comparing them needs no parser (and no int(): Python refuses to
        # convert strings of over 4300 digits).
        return float(_canonical_integer(answer) == _canonical_integer(gold)), "integer"
    if len(answer) > MAX_ANSWER_CHARS:
        return 0.0, "too_long"
    # An identical answer is right only if the gold means something: a gold the parser cannot read is None for
    # every answer, so this shortcut waits until the worker has parsed that gold once.
    if (gold_is_integer or gold in _parseable_golds) and _WHITESPACE.sub("", answer) == _WHITESPACE.sub("", gold):
        return 1.0, "identical"
    if exponent_nesting(answer) > MAX_EXPONENT_NESTING:
        return 0.0, "exponent_tower"
    return None


def _precheck_pair(answer: str, gold: str) -> tuple[float | None, str] | None:
    try:
        return precheck(answer, gold)
    except Exception:  # a bug in a text check must cost this pair only
        logger.exception("the text checks failed on one answer; it scores 0.0")
        return 0.0, "error"


def grade_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[float | None, str]]:
    """Verdict (1.0, 0.0, or None for an unparseable gold) and a status word for each (answer, gold) pair.

    Answers and golds are final-answer strings (already extracted and normalized). One round-trip per worker for the
    whole batch; pairs decided by `precheck` or found in the cache never reach a worker.
    """
    results: list[tuple[float | None, str] | None] = [None] * len(pairs)
    to_worker: dict[tuple[str, str], list[int]] = {}
    with _cache_lock:
        for i, (answer, gold) in enumerate(pairs):
            decided = _precheck_pair(answer, gold)
            if decided is None and (answer, gold) in _cache:
                _cache.move_to_end((answer, gold))
                decided = (_cache[(answer, gold)], "cached")
            if decided is not None:
                results[i] = decided
            else:
                to_worker.setdefault((answer, gold), []).append(i)
    if to_worker:
        unique = list(to_worker)
        graded = _grade_with_workers(unique)
        with _cache_lock:
            for pair, outcome in zip(unique, graded):
                for i in to_worker[pair]:
                    results[i] = outcome
                if outcome[1] != "unavailable" and outcome[1] not in CUT_SHORT_STATUSES:
                    _cache[pair] = outcome[0]
                if outcome[1] in PARSED_GOLD_STATUSES:
                    _parseable_golds[pair[1]] = None
            while len(_parseable_golds) > CACHE_SIZE:
                _parseable_golds.popitem(last=False)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return results
