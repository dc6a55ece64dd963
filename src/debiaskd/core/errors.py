"""The one exception type for errors a user can cause (bad data, bad config, bad paths).

The CLI turns :class:`DebiaskdError` into a one-paragraph message and exit code 2;
:class:`GateRefused` into exit code 3. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import reprlib

# Every rendered message stays readable and small (a few KB at most), whatever the input was:
# a YAML alias bomb or a 100 MB line must not come back as a 100 MB error message.
MAX_MESSAGE_CHARS = 1500
MAX_FIELD_CHARS = 300
MAX_EXAMPLES = 5
MAX_EXAMPLE_CHARS = 200

_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxtuple, _short.maxdict = 3, 4, 4, 4
_short.maxset, _short.maxstring, _short.maxother, _short.maxlong = 4, MAX_EXAMPLE_CHARS, MAX_EXAMPLE_CHARS, 40


def cut(text: object, limit: int) -> str:
    """``text`` (any object: a bounded repr of non-strings) cut to about ``limit`` characters."""
    if not isinstance(text, str):
        text = _short.repr(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters cut]"


def short_repr(value: object, limit: int = MAX_EXAMPLE_CHARS) -> str:
    """A repr of ``value`` that never walks or prints more than a bounded part of it."""
    try:
        return cut(_short.repr(value), limit)
    except Exception:  # a hostile __repr__ or a structure reprlib cannot walk
        return f"<{type(value).__name__}>"


class DebiaskdError(Exception):
    """A problem the user can fix: the message is written for a person.

    ``file`` names the offending file or config key, ``rule`` the rule it broke and
    ``examples`` up to a few offending rows, so every report reads the same way.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        rule: str | None = None,
        examples: list | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.rule = rule
        self.examples = list(examples or [])
        super().__init__(self.render())

    def render(self) -> str:
        """One bounded paragraph (file, message, rule), then at most a few examples, each cut short."""
        parts = []
        if self.file:
            parts.append(f"{cut(str(self.file), MAX_FIELD_CHARS)}:")
        parts.append(cut(str(self.message), MAX_MESSAGE_CHARS))
        if self.rule:
            parts.append(f"(rule: {cut(str(self.rule), MAX_FIELD_CHARS)})")
        text = " ".join(parts)
        if self.examples:
            rows = [row if isinstance(row, str) else short_repr(row) for row in self.examples[:MAX_EXAMPLES]]
            shown = "\n".join(f"  - {cut(row.replace(chr(10), ' '), MAX_EXAMPLE_CHARS)}" for row in rows)
            more = len(self.examples) - MAX_EXAMPLES
            text += f"\nExample offending rows:\n{shown}" + (f"\n  (and {more} more)" if more > 0 else "")
        return text


class GateRefused(Exception):
    """The promotion gate refused a model version (CLI exit code 3)."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("promotion refused: " + "; ".join(reasons))
