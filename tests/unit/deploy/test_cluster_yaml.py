"""``cluster.yaml`` goes through Ray's own config preparation and schema, as ``ray up``
does before it launches anything (``prepare_config`` then ``validate_config`` against
``ray/autoscaler/ray-schema.json`` from the installed wheel)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[3] / "cluster.yaml"


def load(text: str | None = None) -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text() if text is None else text)


def prepared(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does to a config before it talks to the cloud, with the schema
    also applied to the file as written (``prepare_config`` alone crashes with a
    TypeError on some type mistakes, a string where a list of commands belongs)."""
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


def test_cluster_yaml_passes_rays_config_preparation_and_schema():
    config = prepared(load())
    types = config["available_node_types"]
    assert set(types) == {"ray-orch.head", "ray-orch.worker"}
    assert config["head_node_type"] == "ray-orch.head"
    assert types["ray-orch.worker"]["min_workers"] >= 2  # pools can spread from the start
    assert types["ray-orch.worker"]["resources"]["ray_orch_agents"] > 0


def test_nodes_install_ray_orch_and_the_drivers_ray():
    config = prepared(load())
    setup = "\n".join(config["setup_commands"])
    assert "pip install ~/ray-orch" in setup
    assert config["file_mounts"] == {"~/ray-orch": "."}
    # Driver and cluster must run the same Ray.
    pinned = re.search(r'ray\[default\]==([\w.]+)', setup)
    assert pinned and pinned.group(1) == ray.__version__


def test_start_commands_expose_metrics_to_prometheus():
    config = prepared(load())
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "ray start --head --port=6379" in head
    assert "--address=$RAY_HEAD_IP:6379" in workers
    for command in (head, workers):
        assert "--metrics-export-port=8080" in command
        assert "RAY_ORCH_METRICS_PORT=9464" in command
    assert "--dashboard-host=127.0.0.1" in head
    opened = {rule["FromPort"] for rule in config["provider"]["security_group"]["IpPermissions"]}
    assert opened == {8080, 9464}


def _typo_top_level(c: dict[str, Any]) -> None:
    c["max_worker"] = c.pop("max_workers")


def _node_type_without_resources(c: dict[str, Any]) -> None:
    del c["available_node_types"]["ray-orch.worker"]["resources"]


def _unknown_head_type(c: dict[str, Any]) -> None:
    c["head_node_type"] = "ray-orch.missing"


def _command_not_a_list(c: dict[str, Any]) -> None:
    c["setup_commands"] = "pip install ray-orch"


def _too_few_max_workers(c: dict[str, Any]) -> None:
    c["max_workers"] = 1  # below the workers' min_workers


def _bad_security_group_key(c: dict[str, Any]) -> None:
    c["provider"]["security_group"]["Rules"] = []


@pytest.mark.parametrize("breakage", [
    _typo_top_level, _node_type_without_resources, _unknown_head_type, _command_not_a_list,
    _too_few_max_workers, _bad_security_group_key,
])
def test_a_broken_copy_fails_validation(breakage):
    config = load()
    breakage(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        prepared(config)


def test_a_copy_that_is_not_yaml_fails():
    text = CLUSTER_YAML.read_text().replace("max_workers: 4\n", "max_workers: [4\n", 1)
    with pytest.raises(yaml.YAMLError):
        prepared(load(text))
