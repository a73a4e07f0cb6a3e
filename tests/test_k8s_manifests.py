"""The Kubernetes manifests under deploy/k8s, checked offline: no cluster, no network.

The production overlay is rendered the way `kubectl kustomize` would (a tiny renderer
below, for the few kustomization fields the overlay uses; it refuses any other), then:
- every built-in object is validated with `kubernetes_validate` against the Kubernetes
  version below, strictly (an unknown field is an error);
- the custom resources (KEDA, Prometheus Operator) are checked by hand for the structure
  their operators need;
- the properties that matter in production are asserted: one beat and never two, probes
  that survive a broker outage, a worker drain longer than its tasks, non-root
  containers with resources, selectors that select something.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"

# The newest Kubernetes the installed kubernetes-validate ships schemas for (1.37).
K8S_VERSION = "1.37.0"
IMAGE = "ghcr.io/naive/naive-video"
SECRET = "naive-secrets"
SECRET_KEYS = {"DATABASE_URL", "CELERY_BROKER_URL", "FAL_KEY", "SECRET_KEY"}
KEDA_SECRET_KEYS = {"REDIS_ADDRESS", "REDIS_PASSWORD"}
CRD_GROUPS = {"keda.sh", "monitoring.coreos.com"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}


# --- a tiny kustomize -------------------------------------------------------------------

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """Build a kustomization directory into its list of objects (kustomize semantics)."""
    (kustomization,) = load_all(directory / "kustomization.yaml")
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    assert not unsupported, (
        f"{directory}: kustomization fields {sorted(unsupported)} are not supported by the "
        "test renderer; extend it in tests/test_k8s_manifests.py or drop them"
    )
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        assert path.exists(), f"{directory}: resource {entry} does not exist"
        objects.extend(render(path) if path.is_dir() else load_all(path))
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"path"}, f"only `patches: - path: …` is supported, got {patch}"
        _apply_patch(objects, directory / patch["path"])
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    for replica in kustomization.get("replicas", []):
        _set_replicas(objects, replica["name"], replica["count"])
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    ids = [ident(obj) for obj in objects]
    assert len(ids) == len(set(ids)), f"{directory}: duplicate objects in {ids}"
    return objects


def ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _has_list(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and any(_has_list(v) for v in value.values())


def _apply_patch(objects: list[dict[str, Any]], path: Path) -> None:
    (patch,) = load_all(path)
    # A strategic-merge patch made only of mappings merges exactly like this; lists
    # follow per-field merge keys in kustomize, which this renderer does not model.
    assert not _has_list(patch), f"{path}: list fields in patches are not supported"
    targets = [
        obj
        for obj in objects
        if (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
        == (patch["apiVersion"], patch["kind"], patch["metadata"]["name"])
    ]
    assert len(targets) == 1, f"{path}: patch matches {len(targets)} objects, not one"
    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
    body["metadata"] = {k: v for k, v in patch["metadata"].items() if k != "name"}
    _merge(targets[0], body)


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]


def _set_image(objects: list[dict[str, Any]], spec: dict[str, str]) -> None:
    for container in all_containers(objects):
        if _image_name(container["image"]) != spec["name"]:
            continue
        name = spec.get("newName", spec["name"])
        if "digest" in spec:
            container["image"] = f"{name}@{spec['digest']}"
        elif "newTag" in spec:
            container["image"] = f"{name}:{spec['newTag']}"
        else:
            container["image"] = container["image"].replace(spec["name"], name, 1)


def _set_replicas(objects: list[dict[str, Any]], name: str, count: int) -> None:
    targets = [o for o in objects if o["kind"] in WORKLOAD_KINDS and o["metadata"]["name"] == name]
    assert targets, f"replicas: no workload named {name}"
    for obj in targets:
        obj["spec"]["replicas"] = count


# --- helpers ----------------------------------------------------------------------------


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict]]:
    for obj in objects:
        template = obj.get("spec", {}).get("template")
        if isinstance(template, dict) and "spec" in template:
            yield obj, template


def all_containers(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for _, template in pod_templates(objects):
        spec = template["spec"]
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    (match,) = [c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return match


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def match_labels(selector: dict[str, Any]) -> dict[str, str]:
    assert set(selector) == {"matchLabels"}, f"only matchLabels selectors expected: {selector}"
    return selector["matchLabels"]


def selected_pod_owners(objects: list[dict[str, Any]], selector: dict[str, str]) -> list[str]:
    return [
        ident(obj)
        for obj, template in pod_templates(objects)
        if selects(selector, template["metadata"].get("labels", {}))
    ]


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): shlex.split(command) for name, command in entries}


OBJECTS = render(PRODUCTION)
BUILTIN = [o for o in OBJECTS if group_of(o["apiVersion"]) not in CRD_GROUPS]
DEPLOYMENTS = {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == "Deployment"}
OVERLAY = load_all(PRODUCTION / "kustomization.yaml")[0]


# --- the renderer itself ----------------------------------------------------------------


def test_renderer_applies_the_overlay_fields(tmp_path: Path) -> None:
    base, overlay = tmp_path / "base", tmp_path / "overlay"
    base.mkdir()
    overlay.mkdir()
    (base / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (base / "app.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
        "spec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n"
        "        - {name: app, image: 'reg.example:5000/team/app:old'}\n"
        "        - {name: side, image: 'other/side:1'}\n"
        "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n"
        "metadata: {name: app}\nspec: {minReplicas: 1, maxReplicas: 2}\n"
    )
    (overlay / "kustomization.yaml").write_text(
        "namespace: prod\nresources: [../base]\n"
        "images: [{name: 'reg.example:5000/team/app', newTag: '2.0'}]\n"
        "replicas: [{name: app, count: 1}]\npatches: [{path: hpa.yaml}]\n"
    )
    (overlay / "hpa.yaml").write_text(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n"
        "metadata: {name: app}\nspec: {maxReplicas: 9}\n"
    )
    deployment, hpa = render(overlay)
    app, side = deployment["spec"]["template"]["spec"]["containers"]
    assert app["image"] == "reg.example:5000/team/app:2.0"
    assert side["image"] == "other/side:1"
    assert deployment["spec"]["replicas"] == 1
    assert hpa["spec"] == {"minReplicas": 1, "maxReplicas": 9}
    assert {deployment["metadata"]["namespace"], hpa["metadata"]["namespace"]} == {"prod"}

    (overlay / "kustomization.yaml").write_text("resources: [../base]\nnamePrefix: x-\n")
    with pytest.raises(AssertionError, match="not supported"):
        render(overlay)


def test_strict_validation_rejects_unknown_fields() -> None:
    """Guards the guard: the schema check below really is strict."""
    api = copy.deepcopy(DEPLOYMENTS["naive-api"])
    api["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(api, K8S_VERSION, strict=True)


# --- layout -----------------------------------------------------------------------------


def test_every_base_file_is_a_resource_except_the_secret_template() -> None:
    (kustomization,) = load_all(BASE / "kustomization.yaml")
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}


def test_no_secret_is_committed_and_the_template_documents_every_key() -> None:
    assert not [o for o in OBJECTS if o["kind"] == "Secret"]
    (example,) = load_all(BASE / "secret.example.yaml")
    assert example["kind"] == "Secret"
    assert example["metadata"]["name"] == SECRET
    assert set(example["stringData"]) == SECRET_KEYS | KEDA_SECRET_KEYS
    kubernetes_validate.validate(example, K8S_VERSION, strict=True)


def test_overlay_sets_namespace_image_and_beat_replicas() -> None:
    namespace = OVERLAY["namespace"]
    assert find(OBJECTS, "Namespace", namespace)
    for obj in OBJECTS:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == namespace, ident(obj)
    (image,) = OVERLAY["images"]
    assert image["name"] == IMAGE
    images = {c["image"] for c in all_containers(OBJECTS)}
    assert images == {f"{IMAGE}:{image['newTag']}"}
    assert OVERLAY["replicas"] == [{"name": "naive-beat", "count": 1}]


# --- schema validation ------------------------------------------------------------------


@pytest.mark.parametrize("obj", BUILTIN, ids=ident)
def test_builtin_object_validates_strictly(obj: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == "1.37"


def test_only_known_custom_resources() -> None:
    crds = sorted(
        (o["apiVersion"], o["kind"]) for o in OBJECTS if group_of(o["apiVersion"]) in CRD_GROUPS
    )
    assert crds == [
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ]


# --- custom resources, by hand ----------------------------------------------------------


def test_scaled_object_scales_the_worker_on_queue_and_jobs_in_flight() -> None:
    scaled = find(OBJECTS, "ScaledObject", "naive-worker")
    spec = scaled["spec"]
    assert set(spec) <= {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "advanced",
        "triggers",
        "fallback",
        "initialCooldownPeriod",
    }
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "naive-worker",
    }
    assert "naive-worker" in DEPLOYMENTS
    assert spec["minReplicaCount"] == 1
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    triggers = {t["type"]: t for t in spec["triggers"]}
    assert set(triggers) == {"redis", "prometheus"}
    for trigger in spec["triggers"]:
        assert set(trigger) <= {"type", "metadata", "authenticationRef", "name", "metricType"}
        # KEDA's trigger metadata is map[string]string: a bare number is rejected.
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger

    redis = triggers["redis"]
    assert redis["metadata"]["listName"] == "celery"
    assert int(redis["metadata"]["listLength"]) > 0
    auth = find(OBJECTS, "TriggerAuthentication", redis["authenticationRef"]["name"])
    assert "address" not in redis["metadata"]  # comes from the Secret, not the manifest
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert "address" in params

    prometheus = triggers["prometheus"]["metadata"]
    # Every api pod exports the same database-wide gauge: one copy per state, summed.
    assert prometheus["query"] == ('sum(max by (state) (naive_jobs_in_flight{job="naive-api"}))')
    assert float(prometheus["threshold"]) > 0
    assert re.match(r"https?://", prometheus["serverAddress"])


def test_trigger_authentication_reads_the_secret() -> None:
    auth = find(OBJECTS, "TriggerAuthentication", "naive-redis")
    assert set(auth["spec"]) == {"secretTargetRef"}
    for ref in auth["spec"]["secretTargetRef"]:
        assert set(ref) == {"parameter", "name", "key"}
        assert ref["name"] == SECRET
        assert ref["key"] in KEDA_SECRET_KEYS


def test_service_monitors_scrape_named_ports_of_existing_services() -> None:
    services = [o for o in OBJECTS if o["kind"] == "Service"]
    jobs = {}
    for monitor in (o for o in OBJECTS if o["kind"] == "ServiceMonitor"):
        selector = match_labels(monitor["spec"]["selector"])
        (service,) = [s for s in services if selects(selector, s["metadata"]["labels"])]
        port_names = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names, (ident(monitor), endpoint["port"])
            assert endpoint["path"] == "/metrics"
            (relabel,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
            jobs[service["metadata"]["name"]] = relabel["replacement"]
    assert jobs == {"naive-api": "naive-api", "naive-worker": "naive-worker"}


def test_prometheus_rule_has_the_worker_up_alert_on_a_scraped_job() -> None:
    rule_object = find(OBJECTS, "PrometheusRule", "naive-alerts")
    assert set(rule_object["spec"]) == {"groups"}
    rules = {}
    for group in rule_object["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert set(rule) <= {
                "alert",
                "record",
                "expr",
                "for",
                "keep_firing_for",
                "labels",
                "annotations",
            }
            if "for" in rule:
                assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), rule["for"]
            rules[rule.get("alert") or rule["record"]] = rule
    worker_up = rules["NaiveNoWorkerUp"]
    assert worker_up["expr"] == 'absent(up{job="naive-worker"} == 1)'
    assert worker_up["for"] == "5m"
    # The job it watches is the one the worker ServiceMonitor labels its targets with.
    (endpoint,) = find(OBJECTS, "ServiceMonitor", "naive-worker")["spec"]["endpoints"]
    assert {r["replacement"] for r in endpoint["relabelings"]} == {"naive-worker"}


# --- the properties that matter ---------------------------------------------------------


def test_beat_is_exactly_one_and_never_two_during_a_rollout() -> None:
    beat = DEPLOYMENTS["naive-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    scaled = [
        o["spec"]["scaleTargetRef"]["name"]
        for o in OBJECTS
        if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    ]
    assert "naive-beat" not in scaled


def test_autoscalers_own_the_api_and_worker_counts() -> None:
    hpa = find(OBJECTS, "HorizontalPodAutoscaler", "naive-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "naive-api",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # A replica count in the manifest would be re-applied on every deploy, scaling an
    # autoscaled Deployment back down mid-traffic.
    for name in ("naive-api", "naive-worker"):
        assert "replicas" not in DEPLOYMENTS[name]["spec"], name


def test_every_container_has_resources_and_runs_non_root() -> None:
    for obj, template in pod_templates(OBJECTS):
        pod = template["spec"]
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("runAsNonRoot") is True, ident(obj)
        assert pod.get("automountServiceAccountToken") is False, ident(obj)
        mounts_by_volume = {v["name"]: v for v in pod.get("volumes", [])}
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{ident(obj)} container {c['name']}"
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) >= {"cpu", "memory"}, where
            security = c["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["runAsUser"] == 10001, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            for name in mounts.values():
                assert name in mounts_by_volume, f"{where}: no volume {name}"
            # A read-only root needs a writable /tmp (the metrics folder lives in it).
            assert "emptyDir" in mounts_by_volume[mounts["/tmp"]], where


def test_the_multiprocess_metrics_folder_exists_and_can_be_emptied() -> None:
    folder = find(OBJECTS, "ConfigMap", "naive-config")["data"]["PROMETHEUS_MULTIPROC_DIR"]
    assert folder == "/tmp/prometheus"
    for obj, template in pod_templates(OBJECTS):
        (c,) = template["spec"]["containers"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] in ("naive-api", "naive-worker"):
            # gunicorn_conf.on_starting and the worker's worker_init rmtree + mkdir the
            # folder: a mount point there could not be removed and mkdir would fail.
            assert folder not in mounts, ident(obj)
        else:
            # Nothing creates it in beat or the migration: it must already exist.
            assert folder in mounts, ident(obj)


def test_every_deployment_selector_matches_its_template() -> None:
    for name, deployment in DEPLOYMENTS.items():
        selector = match_labels(deployment["spec"]["selector"])
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(selector, labels), name
        assert selected_pod_owners(OBJECTS, selector) == [f"Deployment/{name}"], name


def test_pod_disruption_budgets_select_existing_pods_but_not_beat() -> None:
    budgets = {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {"naive-api", "naive-worker"}
    for name, budget in budgets.items():
        owners = selected_pod_owners(OBJECTS, match_labels(budget["spec"]["selector"]))
        assert owners == [f"Deployment/{name}"], name
        # minAvailable: 1 on a single worker would block every node drain.
        assert budget["spec"].get("maxUnavailable") == 1, name


def test_services_select_pods_and_target_named_ports() -> None:
    api = find(OBJECTS, "Service", "naive-api")
    assert api["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    worker = find(OBJECTS, "Service", "naive-worker")
    assert worker["spec"]["clusterIP"] == "None"
    assert worker["spec"]["ports"] == [
        {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}
    ]
    expected_ports = {"naive-api": ("http", 8000), "naive-worker": ("metrics", 9100)}
    for name, service in (("naive-api", api), ("naive-worker", worker)):
        assert selected_pod_owners(OBJECTS, service["spec"]["selector"]) == [f"Deployment/{name}"]
        ports = {
            p["name"]: p["containerPort"]
            for p in container(DEPLOYMENTS[name], name.removeprefix("naive-"))["ports"]
        }
        port_name, number = expected_ports[name]
        assert ports[port_name] == number
    config = find(OBJECTS, "ConfigMap", "naive-config")["data"]
    assert config["WORKER_METRICS_PORT"] == "9100"


def test_api_probes_check_the_process_and_the_database_only() -> None:
    api = container(DEPLOYMENTS["naive-api"], "api")
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_worker_liveness_reads_the_heartbeat_file_and_never_calls_celery() -> None:
    worker = container(DEPLOYMENTS["naive-worker"], "worker")
    for probe in ("livenessProbe", "startupProbe"):
        assert set(worker[probe]) & {"httpGet", "tcpSocket", "grpc"} == set(), probe
        command = " ".join(worker[probe]["exec"]["command"])
        assert "celery" not in command, probe  # `celery inspect ping` needs the broker
        assert "/tmp/worker-heartbeat" in command and "-mmin -1" in command, probe
    # The worker writes the heartbeat only when told where.
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["WORKER_HEARTBEAT_FILE"] == "/tmp/worker-heartbeat"
    assert "readinessProbe" not in worker  # it serves no traffic


def test_beat_has_no_probe_that_a_broker_outage_could_fail() -> None:
    beat = container(DEPLOYMENTS["naive-beat"], "beat")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe not in beat, probe


def test_shutdown_drains_longer_than_the_work() -> None:
    worker_pod = DEPLOYMENTS["naive-worker"]["spec"]["template"]["spec"]
    assert worker_pod["terminationGracePeriodSeconds"] >= 300
    api_pod = DEPLOYMENTS["naive-api"]["spec"]["template"]["spec"]
    assert api_pod["terminationGracePeriodSeconds"] == 30
    api = container(DEPLOYMENTS["naive-api"], "api")
    command = api["command"]
    graceful = int(command[command.index("--graceful-timeout") + 1])
    pre_stop = api["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + graceful < api_pod["terminationGracePeriodSeconds"]


def test_commands_follow_the_procfile() -> None:
    procs = procfile()
    commands = {
        "api": container(DEPLOYMENTS["naive-api"], "api")["command"],
        "worker": container(DEPLOYMENTS["naive-worker"], "worker")["command"],
        "beat": container(DEPLOYMENTS["naive-beat"], "beat")["command"],
        "release": find(OBJECTS, "Job", "naive-migrate")["spec"]["template"]["spec"]["containers"][
            0
        ]["command"],
    }
    for name, command in commands.items():
        expected = procs[name]
        assert command[0] == expected[0], name
        flags = {t for t in expected if t.startswith("-")}
        assert flags <= set(command), (name, flags - set(command))
        words = [t for t in expected if not t.startswith(("-", "$")) and "$" not in t]
        for word in words:
            assert word in command, (name, word)
    assert "services.api.wsgi:app" in commands["api"]
    beat = commands["beat"]
    assert beat[beat.index("--schedule") + 1] == "/tmp/celerybeat-schedule"
    worker = commands["worker"]
    assert worker[worker.index("--concurrency") + 1] == "4"


def test_migration_job_is_bounded_and_cleaned_up() -> None:
    job = find(OBJECTS, "Job", "naive-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "naive",
        "admin",
        "migrate",
    ]
    assert 0 < job["spec"]["backoffLimit"] <= 6
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_settings_come_from_the_config_map_and_the_secret() -> None:
    config = find(OBJECTS, "ConfigMap", "naive-config")["data"]
    assert {
        "NAIVE_PROVIDER": "fal",
        "MEDIA_ROOT": "/data/media",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus",
        "WORKER_METRICS_PORT": "9100",
    }.items() <= config.items()
    for key in (
        "PUBLIC_BASE_URL",
        "POLL_INITIAL_SECONDS",
        "POLL_MAX_SECONDS",
        "STALE_AFTER_SECONDS",
    ):
        assert config[key], key
    assert not set(config) & (SECRET_KEYS | KEDA_SECRET_KEYS)
    for c in all_containers(OBJECTS):
        assert c["envFrom"] == [{"configMapRef": {"name": "naive-config"}}], c["name"]
        secret_refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert set(secret_refs) == SECRET_KEYS, c["name"]
        for name, ref in secret_refs.items():
            assert ref == {"name": SECRET, "key": name}, c["name"]
        names = [e["name"] for e in c.get("env", [])]
        assert len(names) == len(set(names)), c["name"]


def test_media_volume_is_shared_by_api_and_worker() -> None:
    claim = find(OBJECTS, "PersistentVolumeClaim", "naive-media")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("naive-api", "naive-worker"):
        pod = DEPLOYMENTS[name]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [
            m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/data/media"
        ]
        assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "naive-media"}
    beat_volumes = DEPLOYMENTS["naive-beat"]["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in beat_volumes if "persistentVolumeClaim" in v]
