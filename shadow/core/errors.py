"""The one exception type the CLI prints as a sentence (exit code 2) instead of a traceback."""


class UserError(Exception):
    """Something the user can fix: a bad flag, a missing file, a malformed line."""
