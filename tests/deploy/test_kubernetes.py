"""The Kubernetes manifests: valid against the API schemas, and consistent with each other and the unit.

Built-in kinds are checked with kubernetes-validate's strict schemas (unknown fields are errors), which
ship inside the package and need no cluster or network. The PodMonitor is a prometheus-operator custom
resource that those schemas do not cover: it is checked against the fields of its CRD that it uses, and
against the DaemonSet it must find.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tcpwatchd.config import parse_config
from tests.deploy.tools import DEPLOY, require_module

K8S = DEPLOY / "kubernetes"
BUILT_IN = ("namespace.yaml", "configmap.yaml", "daemonset.yaml")
# The oldest release whose API has every field used (securityContext.appArmorProfile is GA in 1.30),
# and the newest whose schemas kubernetes-validate ships.
VERSIONS = ("1.30", "latest")
NAMESPACE = "tcpwatchd"
JOB = "tcpwatchd"  # the job label the alert rules select on

# prometheus-operator's PodMonitor (monitoring.coreos.com/v1): the part of its CRD's openAPIV3Schema that
# the manifest uses, copied from the CRD; unknown fields are errors here, as a typo would be silently dropped.
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"},
        },
        "targetLabel": {"type": "string"},
        "action": {"type": "string"},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
        "separator": {"type": "string"},
    },
}
POD_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "honorLabels": {"type": "boolean"},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "relabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
            },
        },
    },
}


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((K8S / name).read_text(encoding="utf-8"))
    return doc


def _pod() -> dict[str, Any]:
    spec: dict[str, Any] = _load("daemonset.yaml")["spec"]["template"]
    return spec


def _container() -> dict[str, Any]:
    (container,) = _pod()["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _config_text() -> str:
    text: str = _load("configmap.yaml")["data"]["tcpwatchd.toml"]
    return text


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", BUILT_IN)
def test_manifest_is_valid_for_kubernetes(name: str, version: str) -> None:
    require_module("kubernetes_validate")
    import kubernetes_validate

    wanted = kubernetes_validate.latest_version() if version == "latest" else version
    kubernetes_validate.validate(_load(name), wanted, strict=True)


def test_strict_validation_rejects_a_misspelt_field() -> None:
    require_module("kubernetes_validate")
    import kubernetes_validate

    broken = _load("daemonset.yaml")
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(broken, "1.30", strict=True)


def test_pod_monitor_matches_its_crd_fields() -> None:
    require_module("jsonschema")
    import jsonschema

    jsonschema.validate(_load("podmonitor.yaml"), POD_MONITOR_SCHEMA)


def test_pod_monitor_finds_the_pods_and_names_the_job_the_rules_use() -> None:
    spec = _load("podmonitor.yaml")["spec"]
    labels = _pod()["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert labels[spec["jobLabel"]] == JOB
    ports = {p["name"] for p in _container()["ports"]}
    assert {e["port"] for e in spec["podMetricsEndpoints"]} <= ports
    rules = (DEPLOY / "prometheus" / "tcpwatchd-rules.yml").read_text(encoding="utf-8")
    assert f'up{{job="{JOB}"}}' in rules


def test_config_map_is_a_valid_tcpwatchd_config_listening_where_probes_reach() -> None:
    cfg = parse_config(_config_text(), "configmap.yaml")
    # kubelet probes and Prometheus connect to the pod IP, the node's address with hostNetwork.
    assert cfg.exporter.listen_address == "0.0.0.0"
    assert cfg.sysctl.mode == "audit"  # /proc/sys is read-only in a container
    (metrics,) = [p for p in _container()["ports"] if p["name"] == "metrics"]
    assert metrics["containerPort"] == cfg.exporter.port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert _container()[probe]["httpGet"]["port"] == "metrics"


def test_daemon_set_shares_the_node_and_reads_its_config() -> None:
    pod = _pod()["spec"]
    assert pod["hostNetwork"] is True
    assert pod["hostPID"] is True
    assert pod["automountServiceAccountToken"] is False
    container = _container()
    config_path = container["args"][container["args"].index("-c") + 1]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"]["readOnly"] is True
    assert Path(config_path).parent == Path(mounts["config"]["mountPath"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == _load("configmap.yaml")["metadata"]["name"]
    assert Path(config_path).name in _load("configmap.yaml")["data"]


def test_container_privileges_are_the_unit_s() -> None:
    ctx = _container()["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert "privileged" not in ctx
    assert ctx["capabilities"]["drop"] == ["ALL"]
    unit = (DEPLOY / "systemd" / "tcpwatchd.service").read_text(encoding="utf-8")
    (ambient,) = re.findall(r"^AmbientCapabilities=(.*)$", unit, flags=re.M)
    (containers,) = re.findall(
        r"^AmbientCapabilities=(.*)$",
        (DEPLOY / "systemd" / "containers.conf").read_text(encoding="utf-8"),
        flags=re.M,
    )
    # The unit's two, and the containers.conf drop-in's setns capability (every pod is another namespace).
    assert {f"CAP_{c}" for c in ctx["capabilities"]["add"]} == set(ambient.split()) | {containers}


def test_pods_are_watched_and_named_from_read_only_node_files() -> None:
    cfg = parse_config(_config_text(), "configmap.yaml")
    assert cfg.namespaces.watch == "all"
    mounts = {m["mountPath"]: m for m in _container()["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod()["spec"]["volumes"]}
    for path in ("/var/log/containers", "/var/log/pods", "/var/lib/docker/containers"):
        mount = mounts[str(Path(cfg.namespaces.host_root) / path.lstrip("/"))]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["hostPath"]["path"] == path


def test_pod_monitor_keeps_our_pod_labels() -> None:
    # Without honorLabels, Prometheus renames namespace/pod/container to exported_* (the target's win).
    (endpoint,) = _load("podmonitor.yaml")["spec"]["podMetricsEndpoints"]
    assert endpoint["honorLabels"] is True


def test_every_manifest_is_in_the_kustomization_and_one_namespace() -> None:
    listed = _load("kustomization.yaml")["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    for name in on_disk:
        doc = _load(name)
        namespace = doc["metadata"]["name"] if doc["kind"] == "Namespace" else doc["metadata"]["namespace"]
        assert namespace == NAMESPACE
