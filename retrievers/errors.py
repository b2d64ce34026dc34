"""Errors that front doors turn into one-line messages and exit codes.

`UserInputError` means the caller gave something wrong (exit 2); `ServiceError` means a part of the
system failed at run time (exit 1). Both carry a message that is safe to show as-is.
"""


class VoiceragError(Exception):
    """Base class for errors that have a user-facing one-line message."""

    exit_code = 1


class UserInputError(VoiceragError):
    """Bad input: a file, field, argument or variable is wrong. The message names it."""

    exit_code = 2


class ServiceError(VoiceragError):
    """A runtime failure: a server is down, a model errored, a timeout passed."""

    exit_code = 1
