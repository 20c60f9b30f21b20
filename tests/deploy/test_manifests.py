"""The deployment manifests are valid for the systems that read them, offline.

Kubernetes objects are validated against the published Kubernetes JSON schemas (the
kubernetes-validate package carries them: ``kubectl --dry-run=client`` would need an API
server); Marathon apps against Marathon's app definition rules; the Dockerfile against
what the manifests expect of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = sorted((ROOT / "configs" / "k8s").glob("*.yaml"))
MARATHON = sorted((ROOT / "configs" / "marathon").glob("*.json"))
SCHEMA = json.loads((Path(__file__).parent / "marathon-app.schema.json").read_text())


def k8s_objects() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in K8S:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                out.append((f"{path.name}#{i}:{doc.get('kind')}", doc))
    return out


def test_the_kubernetes_manifests_exist() -> None:
    kinds = {doc["kind"] for _, doc in k8s_objects()}
    assert {
        "Namespace",
        "ConfigMap",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Service",
        "Deployment",
    } <= kinds


@pytest.mark.parametrize(
    ("name", "doc"), k8s_objects(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_kubernetes_object_is_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_rbac_allows_what_the_namers_read() -> None:
    (role,) = [d for _, d in k8s_objects() if d["kind"] == "ClusterRole"]
    granted = {
        (group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if {"get", "list", "watch"} <= set(rule["verbs"])
    }
    for need in [
        ("", "endpoints"),
        ("", "services"),
        ("", "pods"),
        ("", "nodes"),
        ("discovery.k8s.io", "endpointslices"),
    ]:
        assert need in granted


def test_daemonset_publishes_the_ports_and_probes_the_admin() -> None:
    (ds,) = [d for _, d in k8s_objects() if d["kind"] == "DaemonSet"]
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p for p in c["ports"]}
    assert ports["outgoing"]["hostPort"] == 4140
    assert c["readinessProbe"]["httpGet"] == {"path": "/admin/ping", "port": 9990}
    env = {e["name"] for e in c["env"]}
    assert {"NODE_NAME", "POD_IP"} <= env
    assert c["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("path", MARATHON, ids=lambda p: p.name)
def test_marathon_app_is_valid(path: Path) -> None:
    jsonschema.validate(json.loads(path.read_text()), SCHEMA)


def test_marathon_linkpy_app_is_one_per_agent() -> None:
    app = json.loads((ROOT / "configs" / "marathon" / "linkpy.json").read_text())
    assert ["hostname", "UNIQUE"] in app["constraints"]
    assert app["networks"] == [{"mode": "host"}]
    assert [p["port"] for p in app["portDefinitions"]] == [4140, 4141, 9990]
    assert (
        app["healthChecks"][0]["path"] == "/admin/ping" and app["healthChecks"][0]["portIndex"] == 2
    )


def test_marathon_schema_rejects_mistakes() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"id": "/x", "instnaces": 1}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"id": "/x", "constraints": [["hostname", "UNIQ"]]}, SCHEMA)


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2  # multi-stage: the build tools stay out of the image
    user = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")
    images = {
        d["spec"]["template"]["spec"]["containers"][0]["image"]
        for _, d in k8s_objects()
        if d["kind"] == "DaemonSet"
    }
    app = json.loads((ROOT / "configs" / "marathon" / "linkpy.json").read_text())
    assert images == {app["container"]["docker"]["image"]} == {"linkpy:0.1.0"}
    assert "EXPOSE 4140 4141 9990" in text
