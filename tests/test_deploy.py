"""deploy/kubernetes validates against the Kubernetes schemas (PyPI kubernetes-validate, offline) and agrees with
itself and with our config: the fleet config in the ConfigMap is valid and lists exactly the StatefulSet's pods."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from livesight.config import load_config, load_gateway_config
from livesight.fleet.ownership import assignment, for_node

kv = pytest.importorskip("kubernetes_validate", reason="needs PyPI kubernetes-validate (the dev extra)")

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_every_manifest_validates_strictly() -> None:
    found = manifests()
    assert len(found) >= 9
    for (kind, name), doc in found.items():
        try:
            kv.validate(doc, K8S_VERSION, strict=True)
        except kv.ValidationError as e:
            raise AssertionError(f"{kind}/{name}: {e.message} at {'.'.join(map(str, e.path))}") from None


def test_kustomization_lists_every_file() -> None:
    k = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(k["resources"]) == files


def test_fleet_config_matches_the_statefulset(tmp_path: Path) -> None:
    m = manifests()
    sts = m[("StatefulSet", "livesight")]
    headless = m[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    text = m[("ConfigMap", "livesight-fleet")]["data"]["fleet.yaml"]
    (tmp_path / "fleet.yaml").write_text(text)
    env = {
        "POD_NAME": "livesight-1",
        "LIVESIGHT_TOKEN": "t",
        "LIVESIGHT_NODE_TOKEN": "fleet-credential-0123456789",
        "CAMERA_USER": "u",
        "CAMERA_PASSWORD": "p",
    }
    cfg = load_config(tmp_path / "fleet.yaml", env=env)
    pods = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    assert cfg.fleet is not None and cfg.fleet.node_ids == pods
    assert [cfg.fleet.url_of(p) for p in pods] == [f"ws://{p}.{headless['metadata']['name']}:8765" for p in pods]
    assert cfg.node.url == f"ws://livesight-1.{headless['metadata']['name']}:{cfg.server.port}"
    # every camera has exactly one node among the pods, and every pod gets some
    assert set(assignment(cfg).values()) <= set(pods)
    assert all(for_node(cfg, p).cameras for p in pods)
    # probes and the GPU
    (node,) = sts["spec"]["template"]["spec"]["containers"]
    assert node["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert node["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert node["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert cfg.memory.database is not None and cfg.memory.database.startswith("/data/")
    # the gateway reads the same config; its env must satisfy every ${VAR} without a default
    gw = m[("Deployment", "livesight-gateway")]["spec"]["template"]["spec"]["containers"][0]
    needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    assert needed <= {e["name"] for e in gw["env"]}
    assert needed <= {e["name"] for e in node["env"]}
    gw_cfg = load_gateway_config(tmp_path / "fleet.yaml", env={**env, "POD_NAME": "", "CAMERA_USER": ""})
    assert gw_cfg.fleet.token == env["LIVESIGHT_NODE_TOKEN"] != gw_cfg.server.token  # its own credential
    assert cfg.mqtt.enabled and cfg.mqtt.host == m[("Service", "mosquitto")]["metadata"]["name"]


def test_dockerfile_installs_like_the_makefile() -> None:
    root = DEPLOY.parents[1]
    make = re.search(r"^TORCH\s*\?=\s*(\S+)", (root / "Makefile").read_text(), flags=re.M)
    docker = (root / "Dockerfile").read_text()
    pin = re.search(r"^ARG TORCH=(\S+)", docker, flags=re.M)
    assert make and pin and pin.group(1) == make.group(1), "the image must pin the torch the Makefile pins"
    # torch from PyTorch's index for the chosen variant first, then the project (which then keeps that torch)
    torch_at = docker.index('--index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "${TORCH}"')
    assert torch_at < docker.index("pip install .")
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", docker, flags=re.M)
    assert "USER 10001" in docker  # the same uid as the manifests' runAsUser
