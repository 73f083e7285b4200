"""``deploy/kuberay/``: the RayCluster and RayJob for ray-orch have the structure KubeRay
reads, and agree with ``cluster.yaml`` (Ray version, ports, the worker group's resource
and size, the MetricsHub's settings)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[3]
KUBERAY = ROOT / "deploy" / "kuberay"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((KUBERAY / name).read_text())


def cluster_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def check_cluster_spec(spec: dict[str, Any]) -> None:
    """One RayCluster spec: KubeRay's required fields, and cluster.yaml's settings."""
    launcher = cluster_yaml()
    assert spec["rayVersion"] == ray.__version__  # the drivers' Ray
    head_start = " ".join(launcher["head_start_ray_commands"])
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["port"] == re.search(r"--port=(\d+)", head_start).group(1)
    assert head["rayStartParams"]["metrics-export-port"] == \
        re.search(r"--metrics-export-port=(\d+)", head_start).group(1)
    [head_container] = head["template"]["spec"]["containers"]
    assert ports(head_container) == {"gcs-server": 6379, "dashboard": 8265, "client": 10001,
                                     "metrics": 8080, "ray-orch-metrics": 9464}
    hub_port = re.search(r"RAY_ORCH_METRICS_PORT=(\d+)", head_start).group(1)
    assert env(head_container)["RAY_ORCH_METRICS_PORT"] == hub_port
    assert head["template"]["metadata"]["annotations"]["prometheus.io/port"] == hub_port
    [group] = spec["workerGroupSpecs"]
    worker = launcher["available_node_types"]["ray-orch.worker"]
    assert group["minReplicas"] == worker["min_workers"]
    assert group["maxReplicas"] == worker["max_workers"] == launcher["max_workers"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    resources = json.loads(json.loads(group["rayStartParams"]["resources"]))
    assert resources == worker["resources"]
    [worker_container] = group["template"]["spec"]["containers"]
    assert ports(worker_container)["metrics"] == 8080
    assert env(worker_container)["RAY_ORCH_METRICS_PORT"] == hub_port
    for container in (head_container, worker_container):
        assert ray.__version__ in container["image"]  # the image-build note's tag
        assert container["resources"]["requests"] == container["resources"]["limits"]


def test_raycluster_has_kuberays_structure_and_agrees_with_cluster_yaml():
    doc = load("raycluster.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    assert doc["metadata"]["name"] == "ray-orch"
    check_cluster_spec(doc["spec"])


def test_rayjob_runs_ray_orch_on_the_same_cluster_spec():
    job = load("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["entrypoint"].startswith("ray-orch job-run ")
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["rayClusterSpec"] == load("raycluster.yaml")["spec"]
    check_cluster_spec(spec["rayClusterSpec"])


def test_the_image_build_note_pins_the_drivers_ray():
    note = (KUBERAY / "README.md").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-py311" in note


@pytest.mark.parametrize("breakage", ["version", "hub_port", "group_size"])
def test_a_disagreeing_spec_fails_the_check(breakage):
    spec = load("raycluster.yaml")["spec"]
    if breakage == "version":
        spec["rayVersion"] = "2.9.0"
    elif breakage == "hub_port":
        spec["headGroupSpec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = "9999"
    else:
        spec["workerGroupSpecs"][0]["maxReplicas"] = 10
    with pytest.raises(AssertionError):
        check_cluster_spec(spec)
