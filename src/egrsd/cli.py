"""The one error path of the command-line tools (`egrsd-train`, `egrsd-eval`, `egrsd-frontier`, `egrsd-inspect`,
`egrsd-testbed`).

A user's mistake is raised as `UserError(what, fix)` and printed as one line, `error: <what> — <fix>` (prefixed with
`file:line:` where there is one), and the tool exits with status 2; success exits 0. Anything else is a bug in the
program and keeps its traceback.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any


# The status of a user error, as argparse uses for a bad command line.
USER_ERROR_STATUS = 2
# The status of a run stopped by Ctrl-C, as shells report it (128 + SIGINT).
INTERRUPTED_STATUS = 130


class UserError(ValueError):
    """A mistake in the user's input that the user can fix: what is wrong, and how to fix it.

    `problems` holds more than one such line when a whole recipe is checked at once (each is printed on its own);
    `details`, printed after the line(s), holds what the user needs beyond one line (the traceback of their own code).
    """

    def __init__(
        self,
        what: str,
        fix: str | None = None,
        *,
        path: str | None = None,
        line: int | None = None,
        problems: Sequence[str] = (),
        details: str | None = None,
    ):
        self.what, self.fix, self.path, self.line = what, fix, path, line
        self.problems = list(problems)
        self.details = details
        super().__init__(self.message())

    def message(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return f"{where}{self.what}" + (f" — {self.fix}" if self.fix else "")

    def lines(self) -> list[str]:
        return [f"error: {problem}" for problem in self.problems] or [f"error: {self.message()}"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying what the user needs to go on: where the run stopped, and how to resume it."""


def one_line(text: Any) -> str:
    """An exception's text on one line (library messages often span several)."""
    return " ".join(str(text).split())


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose command-line mistakes are one `UserError` line like every other (`--help` still works)."""

    def error(self, message: str):
        raise UserError(message, f"`{self.prog} --help` lists the options")


def looks_like_path(name: str) -> bool:
    """A name written as a local path (./x, /x, ~/x, a/b/c, x/) rather than a Hub id 'org/name'."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/")


def run_cli(main: Callable[..., Any], *args: Any) -> int:
    """Run a tool's body: 0 when it returns, exit status 2 with one `error:` line per problem on a `UserError`, and
    130 with one `interrupted` line (no traceback) on Ctrl-C."""
    try:
        main(*args)
    except UserError as error:
        sys.stdout.flush()
        for line in error.lines():
            print(line, file=sys.stderr)
        if error.details:
            print(error.details.rstrip("\n"), file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS) from None
    except KeyboardInterrupt as interrupt:
        sys.stdout.flush()
        print(f"interrupted: {interrupt}" if str(interrupt) else "interrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED_STATUS) from None
    return 0
