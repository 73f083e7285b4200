"""What ``ray-orch ... --json`` printed, read as the tests' shared Ray session prints it:
that session's raylet and workers log to its driver's stdout at any moment (``(raylet)``
and ``(pid=...)`` lines, as a user's own long-lived driver would see them), and the CLI
run in-process shares that stdout."""

from __future__ import annotations

import json
import re
from typing import Any

_RAY_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\((raylet|pid=|[A-Za-z]+ pid=)")


def json_report(stdout: str) -> Any:
    """The JSON document in ``stdout``, with Ray's own log lines left out."""
    return json.loads("".join(line for line in stdout.splitlines(keepends=True)
                              if not _RAY_LINE.match(line)))
