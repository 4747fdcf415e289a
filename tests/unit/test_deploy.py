"""deploy/kubernetes: every manifest is valid Kubernetes (strict: no unknown field) for the pinned
version, the generated ConfigMaps are what the code renders now (the same catalog, access rules and
metastore settings as the local cluster), and the names that tie the files and conf/cluster.toml
together agree. Nothing is applied: there is no Kubernetes here."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from scenelake import access, deploy
from scenelake.settings import PROJECT_ROOT, load_settings, read_versions

pytestmark = pytest.mark.unit

VERSION = read_versions()["KUBERNETES_VERSION"]


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = [(path.name, doc) for path in sorted(deploy.DEPLOY_DIR.glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert {name for name, _ in found} == {"namespace.yaml", "spark-rbac.yaml", "pipeline.yaml", "hive-metastore.yaml",
                                           "metastore-config.yaml", "trino.yaml", "trino-config.yaml"}
    return found


def of_kind(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key in ("METASTORE_URI", "TRINO_HOST", "TRINO_PORT", "LAKE_ROOT", "ACCESS_GROUPS", "TRINO_HEAP"):
        monkeypatch.delenv(f"SCENELAKE_{key}", raising=False)
    return load_settings("cluster")


def test_every_manifest_is_valid_kubernetes() -> None:
    docs = documents()
    assert len(docs) == 12
    for name, doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == deploy.NAMESPACE, name


def test_the_validator_rejects_what_kubernetes_would() -> None:
    """The control: a misspelt field and a wrong type in the CronJob are refused."""
    cron = of_kind("CronJob", "scenelake-pipeline")
    misspelt = copy.deepcopy(cron)
    misspelt["spec"]["concurencyPolicy"] = misspelt["spec"].pop("concurrencyPolicy")
    wrong = copy.deepcopy(cron)
    wrong["spec"]["jobTemplate"]["spec"]["backoffLimit"] = "two"
    for bad in (misspelt, wrong):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, VERSION, strict=True)


def test_the_generated_config_maps_are_what_the_code_renders_now(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Run `SCENELAKE_ENV=cluster scenelake deploy render` after a contract or access change."""
    for name, text in deploy.rendered(cluster).items():
        assert (deploy.DEPLOY_DIR / name).read_text() == text, f"{name} is stale: run scenelake deploy render"
    trino = of_kind("ConfigMap", "trino-etc")["data"]
    assert json.loads(trino["rules.json"]) == access.rules(cluster.trino_catalog)
    catalog = trino["delta.properties"].splitlines()
    assert "hive.metastore=thrift" in catalog and f"hive.metastore.uri={cluster.metastore_uri}" in catalog
    assert "fs.native-s3.enabled=true" in catalog and not [c for c in catalog if "aws-secret" in c]
    assert deploy.render(cluster, tmp_path) == [tmp_path / n for n in deploy.rendered(cluster)]
    assert deploy.render(cluster, tmp_path) == []  # a second render changes nothing


def test_the_names_that_tie_the_files_together_agree(cluster) -> None:  # type: ignore[no-untyped-def]
    # The Services are where conf/cluster.toml says the metastore and Trino are.
    host, port = re.match(r"thrift://([^:]+):(\d+)$", cluster.metastore_uri).groups()  # type: ignore[union-attr]
    metastore = of_kind("Service", host)
    assert [p["port"] for p in metastore["spec"]["ports"]] == [int(port)]
    trino = of_kind("Service", cluster.trino_host)
    assert cluster.trino_port in [p["port"] for p in trino["spec"]["ports"]]
    # Every Service selects pods some Deployment makes, on a port the container names.
    for service in (metastore, trino):
        [owner] = [d for _, d in documents() if d["kind"] == "Deployment"
                   and d["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()]
        named = {p["name"] for c in owner["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named
    # Every ConfigMap a pod mounts exists and has the keys it picks.
    maps = {d["metadata"]["name"]: d["data"] for _, d in documents() if d["kind"] == "ConfigMap"}
    mounted = 0
    for _, doc in documents():
        if doc["kind"] != "Deployment":
            continue
        for volume in doc["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                picked = {i["key"] for i in volume["configMap"].get("items", [])}
                assert picked <= set(maps[volume["configMap"]["name"]]), (doc["metadata"]["name"], volume)
                mounted += 1
    assert mounted == 3
    # The coordinator gets the access rules and password authentication; the workers only the catalog.
    coordinator = of_kind("Deployment", "trino-coordinator")["spec"]["template"]["spec"]["volumes"][0]["configMap"]
    worker = of_kind("Deployment", "trino-worker")["spec"]["template"]["spec"]["volumes"][0]["configMap"]
    assert {"rules.json", "access-control.properties", "password-authenticator.properties"} <= {
        i["key"] for i in coordinator["items"]}
    assert {i["path"] for i in worker["items"]} == {"config.properties", "node.properties", "jvm.config",
                                                     "catalog/delta.properties"}
    # The scheduled pipeline submits the cluster profile's jobs/pipeline.py, one run at a time, as the
    # account the Role lets start executors.
    cron = of_kind("CronJob", "scenelake-pipeline")["spec"]
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert {"name": "SCENELAKE_ENV", "value": "cluster"} in container["env"]
    script = " ".join(container["args"])
    assert "$(.venv/bin/scenelake submit-args)" in script and "--deploy-mode cluster" in script
    assert (PROJECT_ROOT / "jobs" / "pipeline.py").exists() and "local:///opt/scenelake/jobs/pipeline.py" in script
    binding = of_kind("RoleBinding", "spark-driver")
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"] == "spark"
    assert "pods" in of_kind("Role", "spark-driver")["rules"][0]["resources"]
