"""MLflow: study and variant runs, metrics by group, artifacts, registration and aliases.

Every call goes through :func:`_call`, which retries with backoff and then fails with a
:class:`DebiaskdError` naming the tracking URI. A registered version is created with all of
its evidence tags in the same request, so none exists without them; the ``champion`` alias
is only ever moved by :func:`promote`, after the gate passed on those tags.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shlex
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from debiaskd.core.config import GateConfig, StudyConfig
from debiaskd.core.errors import DebiaskdError, GateRefused
from debiaskd.core.gate import GATE_KEYS, GateDecision, effective_gate, evaluate_gate, thresholds_from_tags
from debiaskd.core.paths import check_output_file, describe

T = TypeVar("T")
CHAMPION, CHALLENGER = "champion", "challenger"
PYFUNC_CODE = Path(__file__).with_name("pyfunc.py")

# Fail fast rather than hang: MLflow's own HTTP retries default to minutes.
for _key, _value in {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",  # offline by default: no usage data leaves the machine
}.items():
    os.environ.setdefault(_key, _value)


def resolve_tracking_uri(cfg: StudyConfig | None = None, out_dir: str | Path | None = None) -> str:
    """``cfg.tracking.uri`` → ``$MLFLOW_TRACKING_URI`` → ``sqlite:///<out_dir>/mlflow.db``."""
    if cfg is not None and cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    base = Path(out_dir) if out_dir is not None else Path.cwd()
    return f"sqlite:///{(base / 'mlflow.db').resolve()}"


def _call(uri: str, what: str, fn: Callable[[], T], attempts: int = 3, backoff: float = 1.0) -> T:
    """Run one MLflow operation with retries; a clear error when the server keeps failing."""
    from mlflow.exceptions import MlflowException  # MLflow: slow (~2.5 s), only this call needs it

    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return fn()
        except MlflowException as exc:
            code = getattr(exc, "error_code", "")
            if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"):
                raise
            last = exc
        except (OSError, ConnectionError) as exc:  # requests' errors derive from OSError
            last = exc
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise DebiaskdError(
        f"MLflow at {uri} failed to {what} after {attempts} attempts: {str(last).splitlines()[0][:300]}",
        file=uri, rule="tracking server reachable",
    )


TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks",
                    "databricks-uc", "uc")
_URI_RULE = ("tracking URI: sqlite:///PATH (a SQLite database file or a new path), http(s)://HOST[:PORT], "
             "postgresql://…, mysql://…, mssql://…, or a local folder")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_CHECKED_URIS: set[str] = set()


def check_tracking_uri(uri: str | None, must_exist: bool = False) -> str | None:
    """Refuse, before any work, a tracking URI MLflow would crash on (or write into wrongly).

    Malformed URIs, unknown schemes, hostless HTTP URIs and ``sqlite:`` paths that are not a
    SQLite database (a text file, a folder, another program's database) raise a DebiaskdError
    naming the URI; with ``must_exist`` a ``sqlite:`` database must already be there (commands
    that only read, such as ``compare``, must not create an empty one)."""
    if uri is None:
        return None
    label = uri if len(uri) <= 300 else uri[:300] + "…"
    if not uri.strip() or any(ord(ch) < 32 for ch in uri):
        raise DebiaskdError("tracking URI is empty or holds control characters", file=repr(label), rule=_URI_RULE)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", uri)
    if match is None or len(match.group(1)) == 1:  # no scheme (a one-letter one would be a drive letter)
        if ":" in uri:
            raise DebiaskdError("not a tracking URI: it has a ':' but no scheme", file=label, rule=_URI_RULE)
        path = Path(uri)
        if path.exists() and not path.is_dir():
            raise DebiaskdError(f"this path {describe(path)}; a local tracking store is a folder (for a SQLite "
                                f"database write sqlite:///{uri})", file=label, rule=_URI_RULE)
        return uri
    scheme = match.group(1).lower()
    base = scheme.split("+", 1)[0]
    if base not in TRACKING_SCHEMES:
        raise DebiaskdError(f"unknown tracking URI scheme '{scheme[:40]}'", file=label, rule=_URI_RULE)
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise DebiaskdError(f"malformed tracking URI ({exc})", file=label, rule=_URI_RULE) from exc
    if base in ("http", "https", "postgresql", "mysql", "mssql") and not parts.hostname:
        raise DebiaskdError(f"a {base} tracking URI needs a host ({base}://HOST…)", file=label, rule=_URI_RULE)
    if base == "file":
        path = Path(parts.path)
        if path.exists() and not path.is_dir():
            raise DebiaskdError(f"this path {describe(path)}; a file: tracking store is a folder (for a SQLite "
                                f"database write sqlite:///{parts.path})", file=label, rule=_URI_RULE)
    if base == "sqlite":
        _check_sqlite(uri, label, must_exist, describe, check_output_file)
    return uri


def _check_sqlite(uri: str, label: str, must_exist: bool, describe, check_output_file) -> None:
    if uri in ("sqlite://", "sqlite:///:memory:"):
        return
    if not uri.startswith("sqlite:///"):
        raise DebiaskdError("a sqlite tracking URI is sqlite:///relative/path.db or sqlite:////absolute/path.db "
                            "(three slashes, then the path)", file=label, rule=_URI_RULE)
    raw = uri[len("sqlite:///"):].split("?", 1)[0]
    if not raw:
        raise DebiaskdError("the sqlite tracking URI names no database file", file=label, rule=_URI_RULE)
    path = Path(raw)
    if not path.exists() and not path.is_symlink():
        if must_exist:
            raise DebiaskdError(f"no tracking database here (this path {describe(path)}); give the sqlite:/// URI of "
                                "a run's mlflow.db, or --out RUN_DIR", file=label, rule="tracking database exists")
        try:  # MLflow will create it: its folder must be creatable and writable
            check_output_file(path, "the sqlite database")
        except DebiaskdError as exc:
            raise DebiaskdError(exc.message, file=label, rule="sqlite database") from exc
        return
    if not path.is_file():
        raise DebiaskdError(f"the sqlite database path {describe(path)}; expected a SQLite database file",
                            file=label, rule="sqlite database")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise DebiaskdError(f"cannot read the sqlite database ({exc.strerror})", file=label,
                            rule="sqlite database") from exc
    if not head:
        return  # an empty file is an empty database: MLflow creates its tables
    if head != _SQLITE_MAGIC:
        raise DebiaskdError("this file is not a SQLite database (its header is not 'SQLite format 3')",
                            file=label, rule="sqlite database")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise DebiaskdError(f"cannot read the SQLite database ({str(exc)[:200]})", file=label,
                            rule="sqlite database") from exc
    if tables and "alembic_version" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise DebiaskdError(f"this SQLite database is not an MLflow tracking database (its tables: {shown}); "
                            "refusing to add MLflow's tables to it", file=label, rule="sqlite database")


def client(uri: str):
    # MLflow: slow (~2.5 s); the CLI and the jobs import this module long before (or without) talking to a server
    import mlflow
    from mlflow import MlflowClient

    if uri not in _CHECKED_URIS:  # once per process: client() is called for every MLflow operation
        check_tracking_uri(uri)
        _CHECKED_URIS.add(uri)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # vision models have no column signature
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    except Exception as exc:  # MLflow's and SQLAlchemy's many error types for a URI it cannot use
        raise DebiaskdError(f"MLflow cannot use this tracking URI: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                            file=uri, rule=_URI_RULE) from exc


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


# ------------------------------------------------------------------------ runs
#: opens an experiment in MLflow 3's UI on its training runs, not in the GenAI (traces) view
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
STUDY_KEY_TAG = "debiaskd.study_key"


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a ``sqlite:`` store live beside the database (``<db folder>/mlruns``), not in
    ``./mlruns`` of whatever directory the command ran in; servers choose their own."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns").as_uri()


def ensure_experiment(uri: str, name: str) -> str:
    c = client(uri)

    def get_or_create() -> str:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return c.create_experiment(name, artifact_location=default_artifact_location(uri), tags=EXPERIMENT_KIND)

    return _call(uri, f"create experiment '{name}'", get_or_create)


def start_study_run(uri: str, cfg: StudyConfig, run_name: str, tags: dict[str, str] | None = None) -> str:
    """The parent run of one pipeline run; params = the resolved config."""
    c = client(uri)
    exp_id = ensure_experiment(uri, cfg.experiment_name)
    all_tags = {"debiaskd.kind": "study", "debiaskd.preset": cfg.preset, "debiaskd.task": cfg.task,
                "debiaskd.config_hash": cfg.config_hash(), **(tags or {})}
    run = _call(uri, "create the study run", lambda: c.create_run(exp_id, run_name=run_name, tags=all_tags))
    log_params(uri, run.info.run_id, flatten(cfg.to_dict()))
    _call(uri, "log the config", lambda: c.log_text(run.info.run_id, cfg.to_yaml(), "resolved_config.yaml"))
    return run.info.run_id


def start_variant_run(
    uri: str, parent_run_id: str, variant: str, seed: int, role: str, params: dict[str, Any] | None = None
) -> str:
    """A nested run per variant and seed, named like the kfp task (``student_kd-s0``)."""
    c = client(uri)
    parent = _call(uri, "read the study run", lambda: c.get_run(parent_run_id))
    tags = {"mlflow.parentRunId": parent_run_id, "debiaskd.kind": "variant", "debiaskd.variant": variant,
            "debiaskd.seed": str(seed), "debiaskd.role": role}
    run = _call(uri, "create a variant run", lambda: c.create_run(
        parent.info.experiment_id, run_name=f"{variant}-s{seed}", tags=tags))
    if params:
        log_params(uri, run.info.run_id, params)
    return run.info.run_id


def log_params(uri: str, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param  # MLflow: slow (~2.5 s), only this call needs it

    c = client(uri)
    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        chunk = items[i:i + 100]
        _call(uri, "log params", lambda chunk=chunk: c.log_batch(run_id, params=chunk))


def log_metrics(uri: str, run_id: str, metrics: dict[str, Any], step: int | None = None) -> None:
    """Log finite numeric metrics (``None``/NaN are skipped), keys kept as given."""
    from mlflow.entities import Metric  # MLflow: slow (~2.5 s), only this call needs it

    c = client(uri)
    now = int(time.time() * 1000)
    items = [
        Metric(k, float(v), now, step or 0)
        for k, v in sorted(metrics.items())
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    ]
    for i in range(0, len(items), 500):
        chunk = items[i:i + 500]
        _call(uri, "log metrics", lambda chunk=chunk: c.log_batch(run_id, metrics=chunk))


def set_tags(uri: str, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag  # MLflow: slow (~2.5 s), only this call needs it

    c = client(uri)
    items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
    _call(uri, "set tags", lambda: c.log_batch(run_id, tags=items))


def log_artifacts(uri: str, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    c = client(uri)
    path = Path(path)
    if path.is_dir():
        _call(uri, f"upload {path.name}", lambda: c.log_artifacts(run_id, str(path), artifact_path))
    elif path.is_file():
        _call(uri, f"upload {path.name}", lambda: c.log_artifact(run_id, str(path), artifact_path))


def log_dict(uri: str, run_id: str, data: dict[str, Any], artifact_file: str) -> None:
    c = client(uri)
    _call(uri, f"upload {artifact_file}", lambda: c.log_dict(run_id, data, artifact_file))


def log_dataset(uri: str, run_id: str, frame, name: str, digest: str, source: str, context: str) -> None:
    """Record a data set input (with its DVC/content hash) on a run."""
    import mlflow  # MLflow: slow (~2.5 s), only this call needs it

    client(uri)
    dataset = mlflow.data.from_pandas(frame, source=source, name=name, digest=digest[:36])

    def log() -> None:
        with mlflow.start_run(run_id=run_id):
            mlflow.log_input(dataset, context=context)
        _keep_running(uri, run_id)  # leaving start_run() ends the run; it is not evaluated yet

    _call(uri, "log the data set input", log)


def run_params(uri: str, run_id: str) -> dict[str, str]:
    """The parameters a run logged."""
    c = client(uri)
    return dict(_call(uri, "read the run", lambda: c.get_run(run_id)).data.params)


#: a run's tag listing the figure keys :func:`log_figures` logged into it (so a second call adds none twice)
FIGURES_TAG = "debiaskd.figures"
_IMAGE_KEY = re.compile(r"[^A-Za-z0-9_\-./ ]")


def log_figures(uri: str, run_id: str, figures: dict[str, str | Path]) -> list[str]:
    """Log PNG files as MLflow images (``log_image`` with a key, step 0): the experiment's chart view shows
    them side by side across runs (*Image grid*). A key already logged into the run (:data:`FIGURES_TAG`)
    is skipped; returns the keys logged now."""
    import mlflow  # MLflow: slow (~2.5 s), only this call needs it

    c = client(uri)
    done = set(filter(None, _call(uri, "read the run", lambda: c.get_run(run_id)).data.tags.get(
        FIGURES_TAG, "").split(",")))
    logged = []
    for key, png in figures.items():
        key = _IMAGE_KEY.sub("_", key)
        if key in done or not Path(png).is_file():
            continue
        image = mlflow.Image(str(png))
        _call(uri, f"log the figure {key}", lambda key=key, image=image: c.log_image(
            run_id, image, key=key, step=0, synchronous=True))
        logged.append(key)
        done.add(key)
        set_tags(uri, run_id, {FIGURES_TAG: ",".join(sorted(done))})
    return logged


def log_table(uri: str, run_id: str, data: dict[str, list[Any]], artifact_file: str) -> bool:
    """Log a table (columns of equal length) with MLflow's ``log_table``: the run's artifact view shows it
    as a table, ``mlflow.load_table`` stacks it across runs. ``log_table`` appends to a table already
    there, so a table the run holds already is left as it is; returns whether it was logged now."""
    c = client(uri)
    folder, _, name = artifact_file.rpartition("/")
    if artifact_file in list_artifacts(uri, run_id, folder or None):
        return False

    def log() -> None:
        with warnings.catch_warnings():  # pandas 3 warns about a dtype test inside log_table
            warnings.filterwarnings("ignore", message=".*'str' dtypes are included by select_dtypes.*")
            c.log_table(run_id, data=data, artifact_file=artifact_file)

    _call(uri, f"log the table {name}", log)
    return True


def _keep_running(uri: str, run_id: str) -> None:
    """Put a run back to RUNNING after a fluent ``with mlflow.start_run(run_id)`` block closed it."""
    client(uri).update_run(run_id, status="RUNNING")


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    c = client(uri)
    _call(uri, "end the run", lambda: c.set_terminated(run_id, status))


def experiment_id(uri: str, name: str) -> str | None:
    """The id of the experiment ``name``, or None when there is none."""
    c = client(uri)
    exp = _call(uri, "find the experiment", lambda: c.get_experiment_by_name(name))
    return None if exp is None else exp.experiment_id


#: where ``mlflow ui`` serves by default
MLFLOW_UI = "http://127.0.0.1:5000"


def ui_hint(uri: str, experiment: str | None = None) -> list[str]:
    """How to open the MLflow UI on an experiment's training runs: the ``mlflow ui`` command for a store
    it reads directly (sqlite, a folder, a database; a password shown as ``***``), or the server itself for
    an ``http(s)`` store; then the link to the experiment's runs in the *Model training* view (MLflow 3
    opens an experiment in its GenAI view otherwise)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    lines = []
    if scheme in ("http", "https"):
        base = uri.rstrip("/")
        if parts.username or parts.password:
            base = base.replace(parts.netloc, parts.hostname + (f":{parts.port}" if parts.port else ""), 1)
        lines.append(f"MLflow UI: {base}")
    elif scheme.startswith("databricks") or scheme == "uc":
        return [f"MLflow: {uri} (experiment {experiment or '?'})"]
    else:
        shown = uri
        if parts.password:
            shown = uri.replace(f":{parts.password}@", ":***@", 1)
        lines.append(f"MLflow UI: mlflow ui --backend-store-uri {shlex.quote(shown)}   (serves {MLFLOW_UI})")
        base = MLFLOW_UI
    if experiment is not None:
        lines.append(f"  runs: {base}/#/experiments/{experiment}/runs?workflowType=machine_learning")
    return lines


def find_study_run(uri: str, experiment: str, key: str) -> str | None:
    """The study run tagged with ``key`` (:data:`STUDY_KEY_TAG`), or None when none was started."""
    c = client(uri)
    exp = _call(uri, "find the experiment", lambda: c.get_experiment_by_name(experiment))
    if exp is None:
        return None
    runs = _call(uri, "search runs", lambda: c.search_runs(
        [exp.experiment_id], f"tags.`{STUDY_KEY_TAG}` = '{key}' and tags.`debiaskd.kind` = 'study'",
        order_by=["attributes.start_time DESC"], max_results=1))
    return runs[0].info.run_id if runs else None


def end_study_run(uri: str, run_id: str, status: str) -> list[str]:
    """End a study run with ``status`` (``FINISHED``, ``FAILED`` or ``KILLED``); after a failure its
    variant runs still ``RUNNING`` end the same way. Returns the names of the runs it ended."""
    c = client(uri)
    ended = []
    if status != "FINISHED":
        exp_id = _call(uri, "read the study run", lambda: c.get_run(run_id)).info.experiment_id
        children = _call(uri, "search runs", lambda: c.search_runs(
            [exp_id], f"tags.`mlflow.parentRunId` = '{run_id}' and attributes.status = 'RUNNING'",
            max_results=1000))
        for child in children:
            end_run(uri, child.info.run_id, status)
            ended.append(child.info.run_name)
    end_run(uri, run_id, status)
    return ended


def download_artifacts(uri: str, run_id: str, artifact_path: str, dst: str | Path) -> Path:
    """Download ``artifact_path`` of a run into the folder ``dst`` (created); returns the local path."""
    import mlflow  # MLflow: slow (~2.5 s), only this call needs it

    client(uri)
    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(_call(uri, f"download {artifact_path}", lambda: mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifact_path, dst_path=str(dst))))


def list_artifacts(uri: str, run_id: str, artifact_path: str | None = None) -> list[str]:
    """The paths directly under ``artifact_path`` of a run (empty when it holds nothing)."""
    c = client(uri)
    return [a.path for a in _call(uri, f"list {artifact_path or 'artifacts'}",
                                  lambda: c.list_artifacts(run_id, artifact_path))]


def system_metrics(run_id: str, node_id: str | None = None):
    """Context manager: sample CPU/RAM (and GPU, where ``pynvml`` imports) into ``run_id`` while training;
    with ``node_id`` the metrics are ``system/<node_id>/...`` (one machine of several)."""
    try:
        # MLflow: slow (~2.5 s), only training samples system metrics
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError:  # pragma: no cover - optional in MLflow builds
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def monitor():
        mon = SystemMetricsMonitor(run_id, sampling_interval=2, samples_before_logging=1, node_id=node_id)
        try:
            mon.start()
        except Exception:  # a monitor failure must never fail training
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                mon.finish()

    return monitor()


# ---------------------------------------------------------------------- models
def log_model(uri: str, run_id: str, model_dir: str | Path, task: str = "nli") -> str:
    """Log the model folder as an MLflow pyfunc (models-from-code; no pickle); returns its URI."""
    import mlflow  # MLflow: slow (~2.5 s), only this call needs it

    client(uri)
    signature, example = model_signature(model_dir, task)

    def log() -> str:
        # packaging (~15 ms): only logging a model needs it, and the CLI imports this module to start
        from debiaskd.tracking.requirements import model_requirements

        requirements, constraints = model_requirements()  # debiaskd==X plus the lock's versions
        with tempfile.TemporaryDirectory(prefix="debiaskd-req-") as tmp, mlflow.start_run(run_id=run_id), \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example.*")
            (Path(tmp) / "constraints.txt").write_text(constraints, encoding="utf-8")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(PYFUNC_CODE), artifacts={"model_dir": str(model_dir)},
                signature=signature, input_example=example,
                pip_requirements=[*requirements, f"-c {Path(tmp) / 'constraints.txt'}"],
            )
        _keep_running(uri, run_id)
        return info.model_uri

    return _call(uri, "log the model", log)


def model_signature(model_dir: str | Path, task: str = "nli"):
    """``(signature, input example)`` of a logged model: premise/hypothesis strings (NLI) or uint8
    images ``(N, 3, H, W)`` (vision) in; label, confidence and one ``p_<label>`` per class out."""
    # MLflow, pandas, torch: slow, and only logging a model needs them (the jobs import this module)
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from debiaskd.tasks import get_task
    from debiaskd.tracking.pyfunc import probability_columns
    from debiaskd.training.models import read_meta

    meta = read_meta(model_dir)
    names = [str(n) for n in meta.get("label_names") or ("entailment", "neutral", "contradiction")]
    outputs = Schema([ColSpec("string", "label"), ColSpec("double", "confidence"),
                      *[ColSpec("double", column) for column in probability_columns(names)]])
    inputs, example = get_task(task).serving_inputs()
    return ModelSignature(inputs=inputs, outputs=outputs), example


def register_model(uri: str, model_uri: str, name: str, tags: dict[str, Any]) -> str:
    """Create a registered version with all its evidence tags in one request; returns the version."""
    import mlflow  # MLflow: slow (~2.5 s), only this call needs it

    client(uri)
    str_tags = {k: str(v) for k, v in tags.items()}
    version = _call(uri, f"register a version of '{name}'",
                    lambda: mlflow.register_model(model_uri, name, tags=str_tags))
    return str(version.version)


def alias_version(uri: str, name: str, alias: str):
    """The version an alias points at, or None (``search_model_versions`` drops aliases)."""
    from mlflow.exceptions import MlflowException  # MLflow: slow (~2.5 s), only this call needs it

    c = client(uri)
    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise DebiaskdError(f"cannot read alias '{alias}' of '{name}': {exc}", file=uri,
                            rule="tracking server reachable") from exc


def set_alias(uri: str, name: str, alias: str, version: str) -> None:
    c = client(uri)
    _call(uri, f"set alias {alias}", lambda: c.set_registered_model_alias(name, alias, version))


def version_metrics(tags: dict[str, str], prefix: str) -> dict[str, float | None]:
    """Read ``<prefix>.<metric>`` evidence tags back into numbers.

    A tag that is absent is left out (the gate treats it as missing evidence); one recorded as
    ``None`` (not measurable on the data) or unreadable reads as ``None``.
    """
    out: dict[str, float | None] = {}
    for key in GATE_KEYS:
        if f"{prefix}.{key}" not in tags:
            continue
        raw = tags[f"{prefix}.{key}"]
        try:
            out[key] = float(raw) if raw not in (None, "", "None") else None
        except ValueError:
            out[key] = None
    return out


def promote(uri: str, name: str, version: str | None, gate: GateConfig, dry_run: bool = False) -> GateDecision:
    """Apply the gate to ``version`` (default: the ``challenger``) and move ``champion`` if it passes.

    The gate reads the version's own evidence (``metric.*``: the registered weights' seed;
    ``teacher.*``: its teacher on the same seed) and the thresholds stored on it
    (``gate.threshold.*``); ``gate`` can tighten a stored threshold, never loosen it
    (:func:`debiaskd.core.gate.effective_gate`). Raises :class:`GateRefused` when refused; the champion
    is left unchanged. If another promotion moved the alias meanwhile, the final alias is re-read
    and reported.
    """
    c = client(uri)
    if version is None:
        challenger = alias_version(uri, name, CHALLENGER)
        if challenger is None:
            raise DebiaskdError(f"'{name}' has no '{CHALLENGER}' version; pass --version", file=uri,
                                rule="registered model")
        version = str(challenger.version)
    from mlflow.exceptions import MlflowException  # MLflow: slow (~2.5 s), only this call needs it

    try:
        mv = c.get_model_version(name, str(version))
    except MlflowException as exc:
        raise DebiaskdError(f"no version {version} of registered model '{name}'", file=uri,
                            rule="registered model") from exc
    tags = dict(mv.tags or {})
    applied, notes = effective_gate(thresholds_from_tags(tags), gate)
    champion = alias_version(uri, name, CHAMPION)
    champion_metrics = None
    if champion is not None and str(champion.version) != str(version):
        champion_metrics = version_metrics(dict(champion.tags or {}), "metric")
    decision = evaluate_gate(version_metrics(tags, "metric"), version_metrics(tags, "teacher"), applied,
                             champion_metrics)
    decision.reasons.extend(notes)
    if dry_run:
        return decision
    for key, value in decision.tags().items():
        _call(uri, "tag the gate decision", lambda key=key, value=value: c.set_model_version_tag(
            name, str(version), key, value))
    if not decision.passed:
        raise GateRefused(decision.reasons)
    set_alias(uri, name, CHAMPION, str(version))
    final = alias_version(uri, name, CHAMPION)
    if final is not None and str(final.version) != str(version):
        decision.reasons.append(f"another promotion won the race: champion is version {final.version}")
    return decision


def resolve_model(uri: str | None, model: str, dest: str | Path | None = None) -> Path:
    """A local model folder for a path or an MLflow URI (``models:/NAME@ALIAS``, ``runs:/…``)."""
    if "://" not in model and not model.startswith(("models:/", "runs:/")):
        return Path(model)
    import mlflow  # MLflow: slow (~2.5 s), only for a models:/ or runs:/ URI

    if uri:
        client(uri)
    target = Path(dest or tempfile.mkdtemp(prefix="debiaskd-model-"))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model, dst_path=str(target)))
    except Exception as exc:
        raise DebiaskdError(f"cannot fetch model '{model}': {str(exc).splitlines()[0][:300]}",
                            file=model, rule="model uri") from exc
    for meta in sorted(local.rglob("debiaskd.json")):
        return meta.parent
    for config in sorted(local.rglob("config.json")):
        return config.parent
    raise DebiaskdError("the MLflow model holds no debiaskd model folder", file=model, rule="model uri")


# --------------------------------------------------------------------- compare
def study_runs(uri: str, experiment: str, parent_run_id: str | None = None) -> list[dict[str, Any]]:
    """Variant runs of an experiment (latest study run by default) with their metrics."""
    c = client(uri)
    exp = _call(uri, "find the experiment", lambda: c.get_experiment_by_name(experiment))
    if exp is None:
        raise DebiaskdError(f"no experiment named '{experiment}'", file=uri, rule="experiment")
    if parent_run_id is None:
        parents = _call(uri, "search runs", lambda: c.search_runs(
            [exp.experiment_id], "tags.`debiaskd.kind` = 'study'", order_by=["attributes.start_time DESC"],
            max_results=1))
        if not parents:
            return []
        parent_run_id = parents[0].info.run_id
    runs = _call(uri, "search runs", lambda: c.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=1000))
    rows = []
    for run in runs:
        rows.append({
            "run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
            "variant": run.data.tags.get("debiaskd.variant"), "seed": run.data.tags.get("debiaskd.seed"),
            "role": run.data.tags.get("debiaskd.role"), "metrics": dict(run.data.metrics),
        })
    rows.sort(key=lambda r: (r["role"] != "teacher", r["variant"] or "", r["seed"] or ""))
    return rows


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
