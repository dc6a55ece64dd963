"""The one exception type for errors a user can cause (bad data, bad config, bad paths).

The CLI turns :class:`DebiaskdError` into a one-paragraph message and exit code 2;
:class:`GateRefused` into exit code 3. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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
        parts = []
        if self.file:
            parts.append(f"{self.file}:")
        parts.append(self.message)
        if self.rule:
            parts.append(f"(rule: {self.rule})")
        text = " ".join(parts)
        if self.examples:
            shown = "\n".join(f"  - {row}" for row in self.examples[:5])
            text += f"\nExample offending rows:\n{shown}"
        return text


class GateRefused(Exception):
    """The promotion gate refused a model version (CLI exit code 3)."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("promotion refused: " + "; ".join(reasons))
