"""No secrets in the repository: scan tracked and untracked-but-not-ignored files.

The scanner looks for well-known credential formats (AWS access key ids, private key blocks,
GitHub/Slack/Google/Hugging Face/OpenAI tokens), credentials embedded in URLs, and assignments of
literal values to password/secret/token keys. Placeholders (``CHANGE_ME``, ``<...>``, ``${VAR}``,
``$(VAR)``, ...) are allowed; a line can be waived with ``pragma: allowlist secret``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 2_000_000
WAIVER = re.compile(r"pragma:\s*allowlist secret", re.IGNORECASE)

PLACEHOLDER = re.compile(
    r"""(?ix)^(
        change[_-]?me\w* | <[^>]*> | \$\{[^}]*\} | \$\([^)]*\) | \$[A-Za-z_]\w* | \{\{.*\}\} | \{[a-z_]*\}
        | x{3,} | \*{3,} | \.{3} | …
        | (your|my|example|dummy|placeholder|redacted|replace|fake|test|sample)[\w.-]*
        | none | null | true | false | pass | password | secret | token | str | bytes | optional\[.*\]
    )$""",
)
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")  # a reference to another variable, not a value
# `mlflow_secret: debiaskd-mlflow`, `secretName: x`: the value names a Kubernetes Secret object.
SECRET_REFERENCE_KEY = re.compile(r"(?i)secret(?:[_-]?name)?$")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

TOKEN_RULES: dict[str, re.Pattern[str]] = {
    "aws-access-key-id": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"),
    "private-key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "github-token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "slack-token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "google-api-key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "huggingface-token": re.compile(r"\bhf_[A-Za-z0-9]{34,}\b"),
    "openai-key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{40,}"),
}
# Credentials of throw-away services on the loopback interface (test fixtures) are not secrets.
URL_CREDENTIALS = re.compile(
    r"\b[a-z][a-z0-9+.-]*://[^\s:/@\"'<>]+:(?P<value>[^\s@/\"'<>]+)@(?P<host>\[[^\]]*\]|[^\s:/\"'<>]*)",
    re.IGNORECASE,
)
LOOPBACK = {"localhost", "127.0.0.1", "[::1]"}
SECRET_KEY = r"[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)"
QUOTED_ASSIGNMENT = re.compile(
    rf"(?i)(?<![A-Za-z0-9])(?P<key>{SECRET_KEY})[\"']?\s*(?::|=|:=)\s*(?P<q>[\"'])(?P<value>[^\"'\s]{{3,}})(?P=q)"
)
BARE_ASSIGNMENT = re.compile(
    rf"(?i)^\s*(?:-\s+)?(?:export\s+)?(?P<key>{SECRET_KEY})\s*(?::|=)\s*(?P<value>[^\s\"'#][^\s#]*)\s*(?:#.*)?$"
)
CONFIG_SUFFIXES = {".yaml", ".yml", ".env", ".ini", ".cfg", ".conf", ".toml", ".properties", ".example"}


@dataclass(frozen=True)
class Finding:
    """One secret-looking string: where, which rule (the value itself is never printed)."""

    file: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}"


def _is_placeholder(value: str) -> bool:
    """An assigned value that is not a secret: a placeholder, a variable name or code."""
    value = value.strip().strip(",;")
    return (not value or bool(PLACEHOLDER.match(value)) or bool(ENV_NAME.match(value)) or "EXAMPLE" in value
            or any(ch in value for ch in "()[]{}"))


def scan_text(text: str, name: str) -> list[Finding]:
    """Findings in ``text``; ``name`` (a path) decides whether bare ``key: value`` lines count."""
    suffix = Path(name).suffix.lower()
    bare_values = suffix in CONFIG_SUFFIXES or Path(name).name.startswith((".env", "Dockerfile"))
    findings: list[Finding] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if WAIVER.search(line):
            continue
        rules = [rule for rule, regex in TOKEN_RULES.items()
                 if any("EXAMPLE" not in m.group(0) for m in regex.finditer(line))]
        if any(not _is_placeholder(m.group("value")) and m.group("host").lower() not in LOOPBACK
               for m in URL_CREDENTIALS.finditer(line)):
            rules.append("credentials-in-url")
        assignments = list(QUOTED_ASSIGNMENT.finditer(line))
        if bare_values and (bare := BARE_ASSIGNMENT.match(line)):
            assignments.append(bare)
        if any(not _is_placeholder(m.group("value"))
               and not (SECRET_REFERENCE_KEY.search(m.group("key")) and K8S_NAME.match(m.group("value")))
               for m in assignments):
            rules.append("secret-assignment")
        findings.extend(Finding(name, number, rule) for rule in rules)
    return findings


def scan_file(path: Path, name: str | None = None) -> list[Finding]:
    """Scan one file (binary and oversized files are skipped)."""
    data = path.read_bytes()
    if len(data) > MAX_BYTES or b"\0" in data[:8192]:
        return []
    return scan_text(data.decode("utf-8", errors="replace"), name or str(path))


def repository_files(root: Path = ROOT) -> list[Path]:
    """Tracked files plus untracked files git does not ignore (what could be committed)."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"not a git checkout: {result.stderr.decode(errors='replace').strip()}")
    names = sorted({n for n in result.stdout.decode().split("\0") if n})
    return [root / n for n in names if (root / n).is_file()]


def scan_repository(root: Path = ROOT) -> list[Finding]:
    findings: list[Finding] = []
    for path in repository_files(root):
        findings.extend(scan_file(path, str(path.relative_to(root))))
    return findings


# ------------------------------------------------------------------------------- tests
def test_repository_has_no_secrets() -> None:
    files = repository_files()
    assert any(p.name == "pyproject.toml" for p in files)
    findings = scan_repository()
    assert not findings, "secret-looking strings (use a placeholder or an env var):\n" + "\n".join(map(str, findings))


def _planted() -> dict[str, str]:
    """Realistic secrets, assembled at run time so this file itself contains none."""
    return {
        "aws-access-key-id": "aws_key_id = " + "AKIA" + "Q7ZLM3XW2RT5NB8K",
        "private-key": "-----BEGIN " + "RSA PRIVATE KEY-----",
        "github-token": "token " + "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "huggingface-token": "HF " + "hf_" + "kXqLmNoPqRsTuVwXyZaBcDeFgHiJkLmNoP",
        "credentials-in-url": "uri = postgresql://mlflow:" + "s3cr3tValue9" + "@postgres:5432/mlflow",
        "secret-assignment": "MLFLOW_TRACKING_PASSWORD: " + "Xk29_vQpL0wz",
    }


@pytest.mark.parametrize("rule", sorted(_planted()))
def test_scanner_catches_a_planted_secret(tmp_path: Path, rule: str) -> None:
    planted = tmp_path / "k8s" / "leak.yaml"
    planted.parent.mkdir()
    planted.write_text("apiVersion: v1\nkind: Secret\nstringData:\n  " + _planted()[rule] + "\n", encoding="utf-8")
    findings = scan_file(planted, "k8s/leak.yaml")
    assert Finding("k8s/leak.yaml", 4, rule) in findings, findings


def test_scanner_finds_secrets_in_a_git_repository(tmp_path: Path) -> None:
    """End to end on a throw-away repo: untracked files count, ignored files do not."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("local.env\n", encoding="utf-8")
    (tmp_path / "app.py").write_text('x = 1\ndb_password = "' + "Pl4nted-Value" + '"\n', encoding="utf-8")
    (tmp_path / "local.env").write_text("API_TOKEN=" + "ignoredButReal123" + "\n", encoding="utf-8")
    (tmp_path / "blob.bin").write_bytes(b"\0\1" + ("AKIA" + "Q7ZLM3XW2RT5NB8K").encode())
    assert [str(f) for f in scan_repository(tmp_path)] == ["app.py:2: secret-assignment"]


@pytest.mark.parametrize(
    "line",
    [
        "  MLFLOW_TRACKING_PASSWORD: CHANGE_ME",
        "  POSTGRES_PASSWORD: <your password>",
        "value: postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@postgres:5432/mlflow",
        'password = os.environ["MLFLOW_TRACKING_PASSWORD"]',
        "    password: str | None = None",
        "secretName: debiaskd-mlflow",
        "key: MLFLOW_TRACKING_PASSWORD",
        'export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY}"',
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        '--from-literal=POSTGRES_PASSWORD="$(openssl rand -hex 24)"',
        'token = "' + "Zz9Realistic-Value" + '"  # pragma: allowlist secret',
        "mlflow_uri: http://mlflow.debiaskd.svc.cluster.local:5000",
        'return f"postgresql://postgres:postgres@127.0.0.1:5432/{db}"',
        '"cluster":{"mlflow_secret":"debiaskd-mlflow","pvc_name":"debiaskd-cache"}',
    ],
)
def test_scanner_allows_placeholders_and_references(line: str) -> None:
    assert scan_text(line, "x.yaml") == []
    assert scan_text(line, "x.py") == []


def test_python_code_is_judged_by_literals_only() -> None:
    assert scan_text("password = get_password()", "a.py") == []
    assert scan_text("password = hunter2value", "a.py") == []  # code: a name, not a literal
    assert scan_text("password = hunter2value", "a.ini") == [Finding("a.ini", 1, "secret-assignment")]
    assert scan_text("client(password='" + "Hx81-pQ" + "')", "a.py") == [Finding("a.py", 1, "secret-assignment")]
    # A Secret's name is fine, a value that is no Kubernetes name is not.
    leaked = '{"client_secret":"' + "Zq8_Lm2-Kp" + '"}'
    assert scan_text(leaked, "a.json") == [Finding("a.json", 1, "secret-assignment")]
