"""deploy/: the Kubernetes manifests and the docker-compose fleet, checked as far as this
machine allows. No cluster and no container engine here: nothing is applied or started.
Checked: each object against the Kubernetes API types (tests/deploy/k8s_schema.py), the
references between objects, that the shipped ConfigMaps build as a pixgate config, and that
probes, ports and grace periods agree with what the gateway does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config.loader import build_snapshot
from engine.state import redis_config
from tests.deploy.k8s_schema import problems
from tests.gateway import REPO

K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "compose"


def objects() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in objects() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def pixgate_container() -> dict[str, Any]:
    pod = one("Deployment", "pixgate")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "pixgate")


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@pytest.mark.parametrize("doc", objects(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_each_object_matches_the_kubernetes_api_types(doc: dict[str, Any]) -> None:
    assert problems(doc) == []


def test_the_check_catches_a_misspelt_field_and_a_missing_required_one() -> None:
    deployment = one("Deployment", "pixgate")
    text = yaml.safe_dump(deployment).replace("readinessProbe", "readinesProbe")
    assert any("readinesProbe" in p for p in problems(yaml.safe_load(text)))
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    del broken["spec"]["template"]["spec"]["containers"][0]["name"]
    assert problems(broken)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_references_between_objects_hold() -> None:
    deployment = one("Deployment", "pixgate")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one("Service", "pixgate")
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"] for p in pixgate_container()["ports"]}
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
    hpa = one("HorizontalPodAutoscaler", "pixgate")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "pixgate"
    assert hpa["spec"]["minReplicas"] >= 2  # a fleet: state in Redis is what makes it one
    for ref in pixgate_container()["envFrom"]:
        one("Secret", ref["secretRef"]["name"])
    sources = deployment["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    for source in sources:
        config_map = one("ConfigMap", source["configMap"]["name"])
        for item in source["configMap"].get("items", []):
            assert item["key"] in config_map["data"]


def test_the_configmaps_build_as_a_pixgate_config_with_redis_state(tmp_path: Path) -> None:
    (tmp_path / "providers.d").mkdir()
    (tmp_path / "routes.yaml").write_text(one("ConfigMap", "pixgate-routes")["data"]["routes.yaml"])
    for name, text in one("ConfigMap", "pixgate-providers")["data"].items():
        (tmp_path / "providers.d" / name).write_text(text)
    secret = one("Secret", "pixgate-secrets")["stringData"]
    env = {**secret, **env_of(pixgate_container())}
    result = build_snapshot(tmp_path, env)
    assert result.snapshot is not None, [d.format() for d in result.diagnostics.sorted()]
    config = redis_config(env, result.snapshot.routes.state)
    assert config is not None and config.url == secret["PIXGATE_REDIS_URL"]
    assert config.prefix == "pixgate-prod" and config.lease_ttl == 30


def test_probes_and_grace_periods_fit_the_gateway() -> None:
    from engine.app import create_app
    from engine.settings import Settings

    app = create_app(Settings.from_env({}, config_dir=REPO, watch=False))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    container = pixgate_container()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["ports"][0]["containerPort"] == 8080  # the Dockerfile's PIXGATE_PORT
    assert "EXPOSE 8080" in (REPO / "Dockerfile").read_text()
    pod = one("Deployment", "pixgate")["spec"]["template"]["spec"]
    grace = int(env_of(container)["PIXGATE_SHUTDOWN_GRACE"])
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > grace + pause


def test_compose_runs_two_replicas_redis_an_s3_store_and_a_proxy() -> None:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    services = compose["services"]
    replicas = [name for name in services if name.startswith("pixgate-")]
    assert len(replicas) == 2 and {"redis", "seaweedfs", "proxy"} <= set(services)
    nginx = (COMPOSE / "nginx.conf").read_text()
    for name in replicas:
        service = services[name]
        env = service["environment"]
        assert re.match(r"redis://redis:6379/", env["PIXGATE_REDIS_URL"])
        assert env["PIXGATE_S3_ENDPOINT"].startswith("http://seaweedfs:")
        assert "/health/ready" in " ".join(service["healthcheck"]["test"])
        assert int(service["stop_grace_period"].rstrip("s")) > int(env["PIXGATE_SHUTDOWN_GRACE"])
        assert f"server {name}:8080" in nginx
        for volume in service["volumes"]:
            assert (COMPOSE / volume.split(":")[0]).exists(), volume
    for volume in services["proxy"]["volumes"] + services["seaweedfs"]["volumes"]:
        source = volume.split(":")[0]
        assert source == "images" or (COMPOSE / source).exists(), volume
    example = (COMPOSE / "example.env").read_text()
    assert re.search(r"^PIXGATE_STATE_SECRET=.{16,}$", example, re.M)
