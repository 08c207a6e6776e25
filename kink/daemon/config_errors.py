"""The one error of configuration loading: every problem found, each with file, line and key."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration file.

    `key` is the dotted key ("peers.gw.proposals[0].esp.encryption"), empty when the problem is
    the file itself (unreadable, not TOML); `line` is None when no line can be named (a required
    key of a table the file does not have); `column` is set for TOML syntax errors only."""

    path: Path
    line: int | None
    key: str
    reason: str
    column: int | None = None

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


class ConfigError(Exception):
    """The configuration cannot be used. Holds every problem found, in file order; the
    attributes `path`, `line`, `key` and `reason` are those of the first. str(): one problem a
    line, "FILE:LINE: KEY: REASON"."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("a ConfigError needs at least one problem")
        self.problems = tuple(problems)
        super().__init__(str(self))

    @property
    def path(self) -> Path:
        return self.problems[0].path

    @property
    def line(self) -> int | None:
        return self.problems[0].line

    @property
    def key(self) -> str:
        return self.problems[0].key

    @property
    def reason(self) -> str:
        return self.problems[0].reason

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)
