"""Dependencies are pinned, and ``pyproject.toml``, ``constraints.txt`` and the environment agree.

``constraints.txt`` is the lock: exact versions of every direct dependency (runtime and the
``dev`` extra) and of everything they pull in. Regenerate it from an environment where
``pip install -e ".[dev]"`` succeeded with ``python tests/test_pins.py > constraints.txt``.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from debiaskd.tracking.requirements import canonical
from debiaskd.tracking.requirements import dependency_closure as closure_of

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
CONSTRAINTS = REPO / "constraints.txt"
PROJECT = "debiaskd"
EXTRAS = ("dev",)
HEADER = """\
# constraints.txt: the lock of debiaskd's environment (direct dependencies, the `dev` extra and
# everything they pull in), exact versions as installed. Use: pip install -c constraints.txt -e ".[dev]"
# Regenerate after changing pyproject.toml and reinstalling: python tests/test_pins.py > constraints.txt
# tests/test_pins.py fails when pyproject.toml, this file and the installed environment disagree.
"""


def direct_requirements(pyproject: Path = PYPROJECT) -> list[Requirement]:
    """``[project].dependencies`` plus the ``dev`` extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    items = list(project.get("dependencies", []))
    for extra in EXTRAS:
        items += project.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(item) for item in items]


def parse_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``name==version`` lines (comments and blanks ignored) → {canonical name: version}."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not match:
            raise ValueError(f"{path}:{number}: not an exact pin: {raw!r}")
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def is_bounded(spec: SpecifierSet) -> bool:
    """Exactly pinned, or bounded above and below."""
    ops = {s.operator for s in spec}
    return bool(ops & {"==", "==="}) or "~=" in ops or (bool(ops & {">", ">="}) and bool(ops & {"<", "<="}))


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def check_pins(pyproject: Path = PYPROJECT, constraints: Path = CONSTRAINTS,
               installed: Callable[[str], str | None] = _installed) -> list[str]:
    """Every disagreement between pyproject, the lock and the environment, as readable lines."""
    pins = parse_constraints(constraints)
    problems = []
    for req in direct_requirements(pyproject):
        name = canonical(req.name)
        locked = pins.get(name)
        if locked is None:
            problems.append(f"{req.name}: in pyproject.toml ({req}) but not in {constraints.name}")
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact and exact[0] != locked:
            problems.append(f"{req.name}: pyproject.toml pins =={exact[0]}, {constraints.name} has =={locked}")
        elif not req.specifier.contains(locked, prereleases=True):
            problems.append(f"{req.name}: {constraints.name} has =={locked}, outside pyproject's '{req.specifier}'")
        have = installed(req.name)
        if have != locked:
            problems.append(f"{req.name}: installed {have}, {constraints.name} has =={locked}")
    return problems


def dependency_closure(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """Installed versions of the direct requirements of ``pyproject`` and of all they require, transitively."""
    return closure_of(direct_requirements(pyproject))


def render_constraints() -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in dependency_closure().items())


# ------------------------------------------------------------------------------ tests
def test_constraints_file_is_exact_pins_only():
    pins = parse_constraints()
    assert len(pins) > 50  # the transitive closure, not just the direct dependencies
    assert canonical(PROJECT) not in pins
    lines = [ln for ln in CONSTRAINTS.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    assert not [ln for ln in lines if ln.startswith(("-e", "--", "file:", "git+"))]


def test_every_direct_dependency_is_pinned_or_bounded():
    loose = [str(r) for r in direct_requirements() if not is_bounded(r.specifier)]
    assert not loose, f"unbounded requirements in pyproject.toml: {loose}"


def test_pyproject_constraints_and_environment_agree():
    problems = check_pins()
    assert not problems, "\n".join(problems)


def test_constraints_cover_the_whole_installed_closure():
    """Every transitive dependency is locked at the version installed here."""
    pins = parse_constraints()
    closure = dependency_closure()
    assert {canonical(r.name) for r in direct_requirements()} <= set(closure)
    missing = sorted(set(closure) - set(pins))
    assert not missing, f"not locked in constraints.txt: {missing}"
    drift = {n: (pins[n], v) for n, v in closure.items() if pins[n] != v}
    assert not drift, f"constraints.txt vs installed: {drift}"


def test_the_checker_reports_a_mismatched_lock(tmp_path):
    text = CONSTRAINTS.read_text(encoding="utf-8")
    torch_pin = re.search(r"^torch==(\S+)$", text, re.M)
    assert torch_pin, "torch is a direct dependency and must be locked"
    bad = tmp_path / "constraints.txt"
    bad.write_text(text.replace(torch_pin.group(0), "torch==0.0.1").replace("\nmlflow==", "\n# mlflow=="),
                   encoding="utf-8")
    problems = check_pins(constraints=bad)
    assert any(p.startswith("torch: pyproject.toml pins ==") and "0.0.1" in p for p in problems), problems
    assert any(p.startswith("torch: installed") for p in problems), problems
    assert any(p.startswith("mlflow: in pyproject.toml") for p in problems), problems


def test_the_checker_reports_a_drifted_environment(tmp_path):
    problems = check_pins(installed=lambda name: "9.9.9" if canonical(name) == "pandas" else _installed(name))
    assert problems == [f"pandas: installed 9.9.9, constraints.txt has =={parse_constraints()['pandas']}"]


def test_the_checker_reports_a_lock_outside_a_range(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["pandas>=99,<100"]\n', encoding="utf-8")
    problems = check_pins(pyproject=pyproject)
    assert len(problems) == 1 and "outside pyproject's" in problems[0]


@pytest.mark.parametrize(("spec", "bounded"), [("==1.0", True), (">=1,<2", True), ("~=1.4", True),
                                               (">=1", False), ("", False), ("<2", False)])
def test_bounded_means_pinned_or_two_sided(spec, bounded):
    assert is_bounded(SpecifierSet(spec)) is bounded


if __name__ == "__main__":
    sys.stdout.write(render_constraints())
