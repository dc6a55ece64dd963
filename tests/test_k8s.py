"""Offline checks of k8s/: schemas, lint, security settings and the names the pipeline relies on.

Overlays are rendered by a small built-in Kustomize subset (``resources``, ``namespace``,
strategic-merge ``patches`` from files), which is compared with ``kubectl kustomize`` when kubectl
is installed; every object is validated against the Kubernetes JSON schemas shipped with
``kubernetes-validate`` (strict: unknown fields are errors).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
TARGETS = ["base", "overlays/dev", "overlays/gpu"]
K8S_VERSION = "1.30.0"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "PriorityClass", "CustomResourceDefinition", "ClusterTrainingRuntime"}
#: Kubeflow Trainer's kinds: kubernetes-validate knows no CRD, so they are checked structurally
#: (:func:`validate_runtime`), their Job templates against the batch/v1 Job schema
TRAINER_API = "trainer.kubeflow.org/v1alpha1"
RUNTIMES = {"TrainingRuntime", "ClusterTrainingRuntime"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
SERVERS = {"Deployment", "StatefulSet", "DaemonSet"}
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "patches"}


# --------------------------------------------------------------------------- rendering
def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def strategic_merge(base: Any, patch: Any) -> Any:
    """The strategic-merge subset the overlays use: maps merge, lists of named items merge by name,
    other lists are replaced, ``null`` deletes."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    named = lambda items: all(isinstance(i, dict) and "name" in i for i in items)  # noqa: E731
    if isinstance(base, list) and isinstance(patch, list) and named(base) and named(patch):
        out = copy.deepcopy(base)
        index = {item["name"]: i for i, item in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                out[index[item["name"]]] = strategic_merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def render(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization with the subset of Kustomize the repo uses (refuses anything else)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kust) - KUSTOMIZATION_KEYS
    assert not unknown, f"{directory}: keep kustomizations to {sorted(KUSTOMIZATION_KEYS)} (got {unknown})"
    objects: list[dict[str, Any]] = []
    for resource in kust.get("resources", []):
        path = (directory / resource).resolve()
        objects.extend(render(path) if path.is_dir() else load_docs(path))
    for patch_ref in kust.get("patches", []):
        assert set(patch_ref) == {"path"}, f"{directory}: only file patches are supported: {patch_ref}"
        for patch in load_docs(directory / patch_ref["path"]):
            hits = [i for i, o in enumerate(objects)
                    if o["kind"] == patch["kind"] and o["metadata"]["name"] == patch["metadata"]["name"]]
            assert len(hits) == 1, f"patch {patch['kind']}/{patch['metadata']['name']} matches {len(hits)} objects"
            objects[hits[0]] = strategic_merge(objects[hits[0]], patch)
    if kust.get("namespace"):
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kust["namespace"]
    return objects


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def rendered(target: str) -> list[dict[str, Any]]:
    if target not in _RENDERED:
        _RENDERED[target] = render(K8S / target)
    return copy.deepcopy(_RENDERED[target])


def all_rendered() -> list[tuple[str, dict[str, Any]]]:
    return [(t, o) for t in TARGETS for o in rendered(t)]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def runtime_node(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``node`` replicated job of a training runtime (the one a TrainJob's trainer runs in)."""
    nodes = [j for j in obj["spec"]["template"]["spec"]["replicatedJobs"] if j["name"] == "node"]
    assert len(nodes) == 1, f"{obj['metadata']['name']}: one replicated job 'node'"
    return nodes[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in RUNTIMES:
        return runtime_node(obj)["template"]["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] in WORKLOADS:
        return obj["spec"]["template"]["spec"]
    return None


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj) or {}
    return spec.get("initContainers", []) + spec.get("containers", [])


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def resource_files() -> list[Path]:
    """Every manifest file a kustomization lists, plus the secret template."""
    files = {K8S / "base" / "secret-template.yaml"}
    for kfile in kustomizations():
        for res in yaml.safe_load(kfile.read_text(encoding="utf-8")).get("resources", []):
            path = (kfile.parent / res).resolve()
            if path.is_file():
                files.add(path)
    return sorted(files)


def contract() -> dict[str, Any]:
    return yaml.safe_load((K8S / "contract.yaml").read_text(encoding="utf-8"))


def secret_template() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["stringData"] for d in load_docs(K8S / "base" / "secret-template.yaml")}


def canonical(value: Any) -> Any:
    """Order-insensitive form for comparing renderings (named lists sorted by name)."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [canonical(v) for v in value]
        if items and all(isinstance(i, dict) and "name" in i for i in items):
            items.sort(key=lambda i: str(i["name"]))
        return items
    return value


# -------------------------------------------------------------------------- the files
def test_every_yaml_file_is_accounted_for() -> None:
    """No stray manifest: each YAML file is a kustomization, a listed resource, a patch or a known extra."""
    known = set(resource_files()) | set(kustomizations()) | {K8S / "contract.yaml"}
    for kfile in kustomizations():
        known |= {kfile.parent / p["path"] for p in yaml.safe_load(kfile.read_text()).get("patches", [])}
    stray = sorted(str(p.relative_to(K8S)) for p in K8S.rglob("*.y*ml") if p.resolve() not in
                   {k.resolve() for k in known})
    assert not stray, f"YAML files no kustomization uses: {stray}"


def test_yamllint_clean() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(K8S / ".yamllint"))
    problems = []
    for path in sorted([*K8S.rglob("*.yaml"), K8S / ".yamllint"]):
        for problem in linter.run(path.read_text(encoding="utf-8"), config, str(path)):
            problems.append(f"{path.relative_to(ROOT)}:{problem.line}:{problem.column} {problem.message}")
    assert not problems, "\n".join(problems)


def test_yamllint_config_reports_problems() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(K8S / ".yamllint"))
    bad = "a: 1\na: 2\nb:   [1,2]\nc: yes   \n"
    rules = {p.rule for p in linter.run(bad, config)}
    assert {"key-duplicates", "truthy", "trailing-spaces"} <= rules


#: the fields of a torch training runtime that Kubeflow Trainer v2 reads (trainingruntime_types.go)
RUNTIME_KEYS = {"apiVersion", "kind", "metadata", "spec"}
RUNTIME_SPEC_KEYS = {"mlPolicy", "template", "podGroupPolicy"}
ML_POLICY_KEYS = {"numNodes", "torch"}
TORCH_POLICY_KEYS = {"numProcPerNode", "elasticPolicy"}
REPLICATED_JOB_KEYS = {"name", "replicas", "template", "dependsOn", "groupName"}


def validate_runtime(obj: dict[str, Any]) -> None:
    """A Kubeflow Trainer runtime, structurally: known keys at every level above the Job templates, a torch
    policy, a ``node`` job carrying the trainer ancestor label, and each replicated job's template valid
    as the spec of a batch/v1 Job (strict)."""
    assert obj["apiVersion"] == TRAINER_API, obj["apiVersion"]
    assert set(obj) <= RUNTIME_KEYS and set(obj["spec"]) <= RUNTIME_SPEC_KEYS, obj["metadata"]["name"]
    policy = obj["spec"]["mlPolicy"]
    assert set(policy) <= ML_POLICY_KEYS and set(policy["torch"]) <= TORCH_POLICY_KEYS
    assert isinstance(policy["numNodes"], int) and policy["numNodes"] >= 1
    assert policy["torch"]["numProcPerNode"] == "auto" or isinstance(policy["torch"]["numProcPerNode"], int)
    assert set(obj["spec"]["template"]) == {"spec"} and set(obj["spec"]["template"]["spec"]) == {"replicatedJobs"}
    node = runtime_node(obj)
    assert node["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    assert "node" in {c["name"] for c in node["template"]["spec"]["template"]["spec"]["containers"]}
    for job in obj["spec"]["template"]["spec"]["replicatedJobs"]:
        assert set(job) <= REPLICATED_JOB_KEYS, job["name"]
        kubernetes_validate.validate({"apiVersion": "batch/v1", "kind": "Job",
                                      "metadata": {"name": f"{obj['metadata']['name']}-{job['name']}",
                                                   **job["template"].get("metadata", {})},
                                      "spec": job["template"]["spec"]}, K8S_VERSION, strict=True)


def validate(obj: dict[str, Any]) -> None:
    """Built-in kinds against the Kubernetes schemas (strict); Kubeflow Trainer runtimes structurally."""
    if obj["kind"] in RUNTIMES:
        validate_runtime(obj)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", resource_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_files_validate(path: Path) -> None:
    for obj in load_docs(path):
        validate(obj)


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_objects_validate(target: str) -> None:
    objects = rendered(target)
    assert objects
    for obj in objects:
        validate(obj)
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate objects"


def test_validation_rejects_broken_objects() -> None:
    """The schemas really are applied: a typo'd field and a wrong type are both refused."""
    deployment = find(rendered("base"), "Deployment", "mlflow")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "one"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_runtime_validation_rejects_broken_runtimes() -> None:
    """The structural check of the training runtime bites: a typo in the pod template (through the Job
    schema), an unknown policy, a missing trainer label."""
    runtime = find(rendered("overlays/gpu"), "TrainingRuntime", contract()["trainer"]["runtime"])
    validate(runtime)
    typo = copy.deepcopy(runtime)
    pod_spec(typo)["containers"][0]["volumeMount"] = []
    policy = copy.deepcopy(runtime)
    policy["spec"]["mlPolicy"]["pytorch"] = {}
    unlabelled = copy.deepcopy(runtime)
    runtime_node(unlabelled)["template"]["metadata"]["labels"].clear()
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)
    for broken in (policy, unlabelled):
        with pytest.raises((AssertionError, KeyError)):
            validate(broken)


def test_renderer_matches_kubectl_kustomize() -> None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: the built-in renderer alone is used")
    for target in TARGETS:
        result = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True,
                                check=False, timeout=60)
        assert result.returncode == 0, result.stderr
        theirs = {(o["kind"], o["metadata"]["name"]): canonical(o) for o in yaml.safe_load_all(result.stdout) if o}
        ours = {(o["kind"], o["metadata"]["name"]): canonical(o) for o in rendered(target)}
        assert theirs.keys() == ours.keys(), target
        for key in ours:
            assert ours[key] == theirs[key], f"{target}: {key} renders differently"


def test_renderer_merges_like_strategic_merge_patch() -> None:
    base = {"spec": {"containers": [{"name": "a", "image": "x:1", "env": [{"name": "A", "value": "1"}]},
                                    {"name": "b", "image": "y:1"}],
                     "tolerations": [{"key": "k1"}], "nodeSelector": {"a": "1"}}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]}],
                      "tolerations": [{"key": "k2"}], "nodeSelector": {"b": "2"}}}
    out = strategic_merge(base, patch)["spec"]
    assert out["containers"][0]["image"] == "x:1" and out["containers"][1]["name"] == "b"
    assert out["containers"][0]["env"] == [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]
    assert out["tolerations"] == [{"key": "k2"}] and out["nodeSelector"] == {"a": "1", "b": "2"}


# ---------------------------------------------------------------------- security checks
def test_all_objects_in_the_namespace() -> None:
    namespace = contract()["namespace"]
    for target, obj in all_rendered():
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == namespace, f"{target}: {obj['kind']}/{obj['metadata']['name']}"
    assert find(rendered("base"), "Namespace", namespace)


def test_images_tagged_and_never_latest() -> None:
    for target, obj in all_rendered():
        for c in containers(obj):
            image = c["image"]
            last = image.rsplit("/", 1)[-1]
            assert ":" in last or "@sha256:" in image, f"{target}: {image} is untagged"
            assert not image.endswith(":latest") and ":latest@" not in image, f"{target}: {image}"
            assert c.get("imagePullPolicy") != "Always" or "@sha256:" not in image


def test_every_container_has_requests_limits_and_a_non_root_context() -> None:
    checked = 0
    for target, obj in all_rendered():
        spec = pod_spec(obj)
        if spec is None:
            continue
        pod_ctx = spec.get("securityContext", {})
        assert pod_ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", obj["metadata"]["name"]
        for c in containers(obj):
            where = f"{target}: {obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            limits, requests = c.get("resources", {}).get("limits", {}), c.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(limits), f"{where}: limits"
            assert {"cpu", "memory"} <= set(requests), f"{where}: requests"
            ctx = {**pod_ctx, **c.get("securityContext", {})}
            assert ctx.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
            assert ctx.get("runAsUser", 1) != 0, f"{where}: runAsUser 0"
            assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert ctx.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
            assert "ALL" in ctx.get("capabilities", {}).get("drop", []), f"{where}: capabilities"
            assert not ctx.get("privileged"), where
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: read-only root needs a writable /tmp (emptyDir)"
            checked += 1
    assert checked >= 12  # 4 containers in base (+ patched copies, + the GPU check)


def test_servers_have_probes_and_no_service_account_token() -> None:
    for target, obj in all_rendered():
        if obj["kind"] in SERVERS:
            spec = pod_spec(obj)
            assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
            for c in spec["containers"]:
                assert "livenessProbe" in c and "readinessProbe" in c, f"{target}: {c['name']} probes"


def test_services_are_cluster_internal() -> None:
    for target, obj in all_rendered():
        assert obj["kind"] not in {"Ingress", "Route", "Gateway", "HTTPRoute"}, f"{target}: exposed outside"
        if obj["kind"] == "Service":
            spec = obj["spec"]
            assert spec.get("type", "ClusterIP") == "ClusterIP", f"{target}: {obj['metadata']['name']}"
            assert not spec.get("externalIPs") and not spec.get("loadBalancerIP")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policies_guard_every_server() -> None:
    for target in TARGETS:
        objects = rendered(target)
        policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
        for server in (o for o in objects if o["kind"] in SERVERS):
            labels = server["spec"]["template"]["metadata"]["labels"]
            guarding = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
            assert guarding, f"{target}: no NetworkPolicy selects {server['metadata']['name']}"
            for policy in guarding:
                assert "Ingress" in policy["spec"]["policyTypes"]
                for rule in policy["spec"]["ingress"]:
                    assert rule.get("from"), f"{policy['metadata']['name']}: ingress from anywhere"
                    for peer in rule["from"]:
                        assert set(peer) == {"podSelector"}, f"{policy['metadata']['name']}: {peer}"


def test_only_pipeline_pods_reach_mlflow_and_only_mlflow_reaches_the_stores() -> None:
    objects = rendered("base")
    c = contract()
    mlflow_labels = find(objects, "Deployment", c["mlflow"]["service"])["spec"]["template"]["metadata"]["labels"]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    allowed_into: dict[str, list[dict[str, str]]] = {}
    for server in (o for o in objects if o["kind"] in SERVERS):
        labels = server["spec"]["template"]["metadata"]["labels"]
        allowed_into[server["metadata"]["name"]] = [
            peer["podSelector"]["matchLabels"] for p in policies if _selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"]["ingress"] for peer in rule["from"]
        ]
    assert allowed_into["mlflow"] == [c["pipeline"]["pod_labels"], c["trainer"]["pod_labels"]]
    runtime = find(rendered("overlays/gpu"), c["trainer"]["runtime_kind"], c["trainer"]["runtime"])
    node_labels = runtime_node(runtime)["template"]["spec"]["template"]["metadata"]["labels"]
    assert _selects({"matchLabels": c["trainer"]["pod_labels"]}, node_labels)  # TrainJob nodes reach MLflow
    assert allowed_into["postgres"] == [{"app.kubernetes.io/name": "mlflow"}]
    assert allowed_into["minio"] == [{"app.kubernetes.io/name": "mlflow"}, {"app.kubernetes.io/name": "minio-setup"}]
    assert not _selects({"matchLabels": c["pipeline"]["pod_labels"]}, mlflow_labels)
    mlflow_policy = next(p for p in policies if _selects(p["spec"]["podSelector"], mlflow_labels))
    assert [p["port"] for r in mlflow_policy["spec"]["ingress"] for p in r["ports"]] == [c["mlflow"]["port"]]


# ----------------------------------------------------------------------------- secrets
def test_no_secret_objects_in_any_kustomization() -> None:
    for kfile in kustomizations():
        kust = yaml.safe_load(kfile.read_text(encoding="utf-8"))
        assert "secretGenerator" not in kust, f"{kfile}: Secrets are created by hand from the template"
    for target, obj in all_rendered():
        assert obj["kind"] != "Secret", f"{target}: {obj['metadata']['name']} would ship credentials"


def test_secret_template_holds_placeholders_only() -> None:
    for name, data in secret_template().items():
        for key, value in data.items():
            sensitive = any(word in key for word in ("PASSWORD", "SECRET", "ACCESS_KEY"))
            if sensitive or key in {"MINIO_ROOT_USER", "MLFLOW_TRACKING_USERNAME"}:
                assert value == "CHANGE_ME", f"{name}.{key} must be the CHANGE_ME placeholder"


def test_every_secret_reference_exists_in_the_template() -> None:
    template = secret_template()
    references = 0
    for target, obj in all_rendered():
        for c in containers(obj):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    references += 1
                    assert ref["name"] in template, f"{target}: unknown Secret {ref['name']}"
                    assert ref["key"] in template[ref["name"]], f"{target}: {ref['name']} has no key {ref['key']}"
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in template
    assert references >= 10


def test_dependent_env_vars_are_defined_before_use() -> None:
    """Kubernetes expands $(VAR) only from variables defined earlier in the same container."""
    import re

    for target, obj in all_rendered():
        for c in containers(obj):
            seen: set[str] = set()
            for env in c.get("env", []):
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", env.get("value", "")):
                    assert var in seen, f"{target}: {c['name']}: $({var}) used before it is defined"
                seen.add(env["name"])


# ------------------------------------------------------------------------------ contract
def test_contract_matches_manifests() -> None:
    c = contract()
    base = rendered("base")
    namespace = c["namespace"]
    # Secret name + keys, exactly.
    template = secret_template()
    assert set(template[c["mlflow"]["secret"]["name"]]) == set(c["mlflow"]["secret"]["keys"])
    assert template[c["mlflow"]["secret"]["name"]]["MLFLOW_TRACKING_URI"] == c["mlflow"]["uri"]
    # Service name/port and the URI built from them.
    service = find(base, "Service", c["mlflow"]["service"])
    assert [p["port"] for p in service["spec"]["ports"]] == [c["mlflow"]["port"]]
    assert c["mlflow"]["uri"] == f"http://{c['mlflow']['service']}.{namespace}.svc.cluster.local:{c['mlflow']['port']}"
    deployment = find(base, "Deployment", c["mlflow"]["service"])
    assert _selects({"matchLabels": service["spec"]["selector"]}, deployment["spec"]["template"]["metadata"]["labels"])
    mlflow_container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert mlflow_container["image"] == c["images"]["mlflow"]
    assert any(p["containerPort"] == c["mlflow"]["port"] for p in mlflow_container["ports"])
    # PVC, pipeline identity.
    assert find(base, "PersistentVolumeClaim", c["cache"]["pvc"])
    sa = c["pipeline"]["service_account"]
    assert find(base, "ServiceAccount", sa)
    binding = find(base, "RoleBinding", sa)
    assert {"kind": "ServiceAccount", "name": sa, "namespace": namespace} in binding["subjects"]
    assert find(base, "Role", binding["roleRef"]["name"])
    # The CUDA image is what the GPU overlay runs.
    gpu_images = {ct["image"] for o in rendered("overlays/gpu") for ct in containers(o)}
    assert c["images"]["cuda"] in gpu_images


def test_contract_matches_cluster_config() -> None:
    from debiaskd.core.config import ClusterConfig

    c, cfg = contract(), ClusterConfig()
    assert cfg.trainer_runtime == c["trainer"]["runtime"] and cfg.trainer_runtime_kind == c["trainer"]["runtime_kind"]
    assert cfg.image == c["images"]["cpu"] and cfg.gpu_image == c["images"]["cuda"]
    assert cfg.mlflow_secret == c["mlflow"]["secret"]["name"]
    assert cfg.mlflow_uri == c["mlflow"]["uri"]
    assert cfg.pvc_name == c["cache"]["pvc"] and cfg.pvc_mount == c["cache"]["mount"]
    assert cfg.gpu_accelerator == c["gpu"]["resource"]


def test_gpu_overlay_schedules_like_the_paper_preset() -> None:
    from debiaskd.core.config import load_config

    cluster = load_config("paper").cluster
    resource = contract()["gpu"]["resource"]
    gpu_objects = [o for o in rendered("overlays/gpu") if any(
        resource in ct.get("resources", {}).get("limits", {}) for ct in containers(o))]
    assert gpu_objects, "the gpu overlay requests no GPU"
    gpu_objects.append(find(rendered("overlays/gpu"), cluster.trainer_runtime_kind, cluster.trainer_runtime))
    for obj in gpu_objects:  # the GPU check and every TrainJob node land where the paper's tasks do
        spec = pod_spec(obj)
        assert spec["nodeSelector"] == cluster.node_selector
        assert spec["tolerations"] == cluster.tolerations
    for target in ("base", "overlays/dev"):
        for obj in rendered(target):
            assert all(resource not in ct.get("resources", {}).get("limits", {}) for ct in containers(obj))
            assert "nodeSelector" not in (pod_spec(obj) or {})


def _allows(role: dict[str, Any], group: str, resource: str, verb: str) -> bool:
    return any(group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
               and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])) for rule in role["rules"])


def test_the_pipeline_account_may_launch_and_follow_trainjobs() -> None:
    """What :mod:`debiaskd.runtime.trainjob` calls, as the pipeline's service account: create, get and
    delete TrainJobs, list their pods, read the pods' logs; and nothing cluster-wide."""
    c = contract()
    objects = rendered("base")
    binding = find(objects, "RoleBinding", c["pipeline"]["service_account"])
    role = find(objects, "Role", binding["roleRef"]["name"])
    group = c["trainer"]["api_version"].split("/")[0]
    for verb in ("create", "get", "list", "watch", "delete"):
        assert _allows(role, group, "trainjobs", verb), verb
    assert _allows(role, "", "pods", "list") and _allows(role, "", "pods/log", "get")
    assert not _allows(role, group, "trainjobs", "patch") and not _allows(role, "", "secrets", "get")
    assert not any(o["kind"] in {"ClusterRole", "ClusterRoleBinding"} for t in TARGETS for o in rendered(t))


def test_the_shared_volume_is_mounted_by_every_node_of_the_trainjobs() -> None:
    """Every node of a TrainJob mounts the pipeline's shared volume at the pipeline's mount path (the task
    leaves data, spec and teacher there), ReadWriteMany wherever tasks may run on several nodes."""
    c = contract()
    modes = {"base": "ReadWriteMany", "overlays/gpu": "ReadWriteMany", "overlays/dev": "ReadWriteOnce"}
    for target, mode in modes.items():
        assert find(rendered(target), "PersistentVolumeClaim", c["cache"]["pvc"])["spec"]["accessModes"] == [mode]
    assert c["cache"]["access_mode"] == "ReadWriteMany"
    runtime = find(rendered("overlays/gpu"), c["trainer"]["runtime_kind"], c["trainer"]["runtime"])
    spec = pod_spec(runtime)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
              if "persistentVolumeClaim" in v}
    node = next(ct for ct in spec["containers"] if ct["name"] == c["trainer"]["container"])
    mounts = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
    assert claims[mounts[c["cache"]["mount"]]] == c["cache"]["pvc"]
    assert "/dev/shm" in mounts  # NCCL's shared memory
    assert node["image"] == c["images"]["cuda"]
    assert spec["automountServiceAccountToken"] is False  # training pods never talk to the API
    assert not _selects({"matchLabels": c["pipeline"]["pod_labels"]},
                        runtime_node(runtime)["template"]["spec"]["template"]["metadata"]["labels"])


def test_overlays_patch_what_they_claim() -> None:
    base_pvc = find(rendered("base"), "PersistentVolumeClaim", "debiaskd-cache")
    dev_pvc = find(rendered("overlays/dev"), "PersistentVolumeClaim", "debiaskd-cache")
    gpu_pvc = find(rendered("overlays/gpu"), "PersistentVolumeClaim", "debiaskd-cache")
    sizes = [p["spec"]["resources"]["requests"]["storage"] for p in (dev_pvc, base_pvc, gpu_pvc)]
    assert sizes == ["10Gi", "50Gi", "200Gi"]
    dev_mlflow = find(rendered("overlays/dev"), "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in dev_mlflow["env"]}
    assert env["MLFLOW_WORKERS"]["value"] == "1" and "valueFrom" in env["AWS_ACCESS_KEY_ID"]


def test_mlflow_allowed_hosts_admit_the_service_names_only() -> None:
    """MLflow's own Host-header check, fed the Deployment's MLFLOW_SERVER_ALLOWED_HOSTS."""
    from mlflow.server.security_utils import is_allowed_host_header

    container = find(rendered("base"), "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    value = next(e["value"] for e in container["env"] if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS")
    allowed = [h.strip() for h in value.split(",")]
    c = contract()
    service, port, namespace = c["mlflow"]["service"], c["mlflow"]["port"], c["namespace"]
    for host in (c["mlflow"]["uri"].split("://", 1)[1], f"{service}:{port}", f"{service}.{namespace}:{port}",
                 f"{service}.{namespace}.svc:{port}", "localhost:5000", "127.0.0.1:5000"):
        assert is_allowed_host_header(allowed, host), host
    for host in ("attacker.example.com", "mlflow.evil.com:5000", "10.0.0.8:5000"):
        assert not is_allowed_host_header(allowed, host), host


@pytest.mark.slow
def test_mlflow_server_starts_with_the_manifest_settings(tmp_path: Path) -> None:
    """docker/mlflow-entrypoint.sh + the Deployment's plain env: the server comes up, answers the
    contract's Service host name and refuses other Host headers (DNS-rebinding protection).
    PostgreSQL, MinIO and basic auth are swapped for local stand-ins (sqlite, a folder, no auth)."""
    import os
    import signal
    import socket
    import time
    import urllib.error
    import urllib.request

    if not shutil.which("mlflow") or not shutil.which("sh"):
        pytest.skip("mlflow CLI or sh not available")
    container = find(rendered("base"), "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e and "$(" not in e["value"]}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, **plain,
           "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port),
           "MLFLOW_WORKERS": "1", "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts")}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(["sh", str(ROOT / "docker" / "mlflow-entrypoint.sh")], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    c = contract()
    service_host = c["mlflow"]["uri"].split("://", 1)[1].rstrip("/")

    def status(host: str, path: str) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        for _ in range(120):
            try:
                if status(f"127.0.0.1:{port}", "/health") == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not come up:\n" + (tmp_path / "server.log").read_text())
        api = "/api/2.0/mlflow/experiments/search?max_results=1"
        assert status(service_host, api) == 200
        assert status(f"{c['mlflow']['service']}:{c['mlflow']['port']}", api) == 200
        assert status("attacker.example.com", api) == 403
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
