"""Promote the registered challenger to champion when the gate passes on its evidence."""

from __future__ import annotations

from typing import Any, Literal

from debiaskd.core.errors import DebiaskdError
from debiaskd.jobs.base import Job
from debiaskd.tracking.service import CHALLENGER, CHAMPION


class PromoteJob(Job):
    """Move ``champion`` to the study's ``challenger`` if the gate passes (:class:`GateRefused` otherwise);
    returns ``{"name", "version", "alias": "champion", "decision"}``."""

    KIND: Literal["promote_challenger"] = "promote_challenger"

    def run(self) -> dict[str, Any]:
        name = f"{self.config.model_prefix}-student"
        challenger = self.tracker.alias_version(name, CHALLENGER)
        if challenger is None:
            raise DebiaskdError(f"'{name}' has no challenger to promote", file=self.tracker.uri,
                                rule="registered model")
        decision = self.tracker.promote(name, str(challenger.version), self.config.gate)
        return {"name": name, "version": str(challenger.version), "alias": CHAMPION, "decision": decision.to_dict()}
