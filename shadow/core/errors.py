"""The error boundary's vocabulary: what a user can fix, and the documented exit codes of every command.

Every error a user can fix derives from `UserError`; `shadow.cli.main` is the one place that turns it into
one line on stderr and `ExitCode.COULD_NOT_RUN`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of `shadow <command>` (README, "Exit codes").

    The gate's verdicts own 0-2 so that CI can tell "the candidate failed" from "the gate could not run"
    and from a mistyped flag.
    """

    OK = 0
    """Done; for `shadow gate`, the candidate passed."""
    FAIL = 1
    """`shadow gate`: the candidate failed; `shadow import`: some lines were rejected (the rest imported)."""
    INCONCLUSIVE = 2
    """`shadow gate`: not enough evidence either way (or a marginal score: a person should look)."""
    COULD_NOT_RUN = 3
    """A file, setting, policy or database the user must fix; stderr names it in one line."""
    USAGE = 4
    """A bad command line (unknown flag, missing argument, a value of the wrong form)."""
    INTERRUPTED = 130
    """Ctrl-C."""


class UserError(Exception):
    """Something the user can fix: a bad flag value, a missing file, a malformed line, an unreachable
    database. The message is one sentence that names what to change.

    `exit_code` is what `shadow.cli.main` exits with; a subclass (or one instance) may choose another.
    """

    exit_code: ExitCode = ExitCode.COULD_NOT_RUN


class UsageError(UserError):
    """A command line that does not make sense (exit `ExitCode.USAGE`, like argparse's own errors)."""

    exit_code = ExitCode.USAGE


def one_line(message: object) -> str:
    """The message on one line: a multi-line text (a driver's, a parser's) joined with "; ".

    >>> one_line("cannot connect\\n  is the server running?\\n")
    'cannot connect; is the server running?'
    """
    lines = [line.strip() for line in str(message).splitlines()]
    return "; ".join(line for line in lines if line) or type(message).__name__
