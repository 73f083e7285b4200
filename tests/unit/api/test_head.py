"""The standing runtime's head (``api/head.py``) when it cannot start: a typed error with
the head's own words, and nothing of it left running. (Its start is checked on real Ray
in tests/integration/test_standing.py and test_auto_runtime.py.)"""

from __future__ import annotations

import os
import sys

import pytest

from ray_orch.api.head import HeadSpec, start_head


def test_a_head_that_cannot_start_says_why_in_a_typed_error(tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where Ray wants its temp dir")
    spec = HeadSpec(port=1, dashboard_port=2, agent_port=3, temp_dir=str(blocked / "ray"))
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    with pytest.raises(RuntimeError) as caught:
        start_head(spec, env=env, log=tmp_path / "head.log", here=False)
    message = str(caught.value)
    assert message.startswith("the Ray head did not start")
    assert "Error" in message  # the traceback's last lines, from the head's log
    assert (tmp_path / "head.log").stat().st_mode & 0o777 == 0o600
