"""The few exceptions the CLI turns into exit codes."""

import contextlib
import errno
from collections.abc import Iterator


class RacepubError(Exception):
    """An expected failure with a message fit for the user (exit 1)."""


class UsageError(RacepubError):
    """Bad command-line usage or bad config (exit 2). One line per problem."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(UsageError):
    """The config file is missing or wrong; every problem is collected."""


class SourceError(RacepubError):
    """The database could not be reached or queried."""


class SinkError(RacepubError):
    """An object could not be written to the sink."""


@contextlib.contextmanager
def listening(host: str, port: int) -> Iterator[None]:
    """A port that cannot be listened on (in use, privileged) is the user's
    to fix: one line, no traceback."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        raise RacepubError(f"cannot listen on {host}:{port}: {e.strerror}") from None
