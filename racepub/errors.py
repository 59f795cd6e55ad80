"""The few exceptions the CLI turns into exit codes."""


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
