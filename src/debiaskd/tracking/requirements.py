"""Pinned requirements: what a logged MLflow model needs to run, at the versions the lock installed.

``constraints.txt`` (the repository's lock) is written from :func:`dependency_closure` of the
project's requirements, and every install path takes it; a logged model records ``debiaskd`` at its
own version plus the installed closure of its runtime requirements, which in an environment
installed from the lock are the lock's versions.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from collections.abc import Iterable
from functools import lru_cache

from packaging.markers import default_environment
from packaging.requirements import Requirement

PROJECT = "debiaskd"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(roots: Iterable[Requirement]) -> dict[str, str]:
    """Installed versions of ``roots`` and of everything they require, transitively (markers and
    extras honoured; ``debiaskd`` itself left out), by canonical name."""
    env = default_environment()
    seen: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [
        (r.name, tuple(sorted(r.extras))) for r in roots
        if r.marker is None or r.marker.evaluate({**env, "extra": ""})]
    done: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, want = todo.pop()
        if (canonical(name), want) in done:
            continue
        done.add((canonical(name), want))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # required on another platform or python only
        if canonical(name) != PROJECT:
            seen[canonical(name)] = dist.version
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is not None and not any(
                    req.marker.evaluate({**env, "extra": extra}) for extra in ("", *want)):
                continue
            todo.append((req.name, tuple(sorted(req.extras))))
    return dict(sorted(seen.items()))


@lru_cache(maxsize=1)
def model_requirements() -> tuple[list[str], str]:
    """``(pip requirements, constraints text)`` for a logged model: ``debiaskd==<version>`` and the
    exact installed versions of everything debiaskd needs at run time."""
    version = md.version(PROJECT)
    pins = dependency_closure([Requirement(f"{PROJECT}=={version}")])
    return [f"{PROJECT}=={version}"], "".join(f"{name}=={v}\n" for name, v in pins.items())
