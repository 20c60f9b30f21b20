"""Every example config in configs/ is valid and builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from linkpy.cli import main
from linkpy.config.load import load_file
from linkpy.linker import Linker

from .conftest import ROOT

#: Linker configs (configs/k8s and configs/marathon hold deployment manifests).
CONFIGS = sorted(
    p
    for p in (ROOT / "configs").rglob("*.yaml")
    if "k8s" not in p.parts and "marathon" not in p.parts
)


def test_there_are_examples() -> None:
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


def make_certs(d: Path) -> Path:
    """Stand-ins for the certificates the TLS examples read from /certs."""
    d.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaf = ca.issue_cert("linkpy.linkpy.svc", "linkpy.marathon")
    leaf.cert_chain_pems[0].write_to_path(str(d / "linkpy.pem"))
    leaf.private_key_pem.write_to_path(str(d / "linkpy-key.pem"))
    return d


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
async def test_example_config(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check", str(path)]) == 0
    text = path.read_text()
    if "/certs/" in text:
        copy = tmp_path / path.name
        copy.write_text(text.replace("/certs/", f"{make_certs(tmp_path / 'certs')}/"))
        path = copy
    Linker(load_file(str(path)))  # builds without opening a socket


def configmap_configs() -> list[tuple[str, str]]:
    """The linkpy configs inside the Kubernetes ConfigMaps of configs/k8s."""
    import yaml

    out = []
    for path in sorted((ROOT / "configs" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ConfigMap":
                for key, text in doc["data"].items():
                    out.append((f"{path.name}:{key}", text))
    return out


@pytest.mark.parametrize(("name", "text"), configmap_configs(), ids=lambda x: x[:40])
async def test_configmap_config(
    name: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as the DaemonSet's downward API sets them
    monkeypatch.setenv("POD_IP", "10.0.3.7")
    monkeypatch.setenv("NODE_NAME", "node-3")
    monkeypatch.setenv("POD_NAMESPACE", "linkpy")
    # the certificates the DaemonSet mounts at /certs (configmap-tls.yaml)
    certs = make_certs(tmp_path / "certs")
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("/certs/", f"{certs}/"))
    assert main(["check", str(path)]) == 0
    Linker(load_file(str(path)))


def test_there_are_configmaps() -> None:
    assert any(name.startswith("configmap.yaml") for name, _ in configmap_configs())
