""""Supervisor was lost mid-run" names its cause (red team, round 3: once it said nothing
more). The driver's error is built from Ray's own exceptions, constructed here as Ray
builds them from an actor's death context (no Ray started)."""

from __future__ import annotations

import pytest
from ray.core.generated.common_pb2 import ActorDiedErrorContext
from ray.exceptions import ActorDiedError, ActorUnavailableError

from ray_orch.api.driver_errors import as_run_error, death_cause
from ray_orch.core.errors import SupervisorLostError

ACTOR = bytes.fromhex("ab" * 16)


def died(message: str, **context) -> ActorDiedError:
    return ActorDiedError(ActorDiedErrorContext(
        error_message=message, class_name="Supervisor", actor_id=ACTOR, pid=4242,
        node_ip_address="10.0.0.7", **context))


@pytest.mark.parametrize(("message", "meaning"), [
    ("The actor is dead because its worker process has died. Worker exit type: "
     "NODE_OUT_OF_MEMORY Worker exit detail: Task was killed due to the node running low "
     "on memory.", "its node ran out of memory"),
    ("The actor died because its node has died. Node Id: 1f2e\n\tthe actor's node was "
     "terminated unexpectedly: health check failed", "its node died"),
    ("The actor is dead because its worker process has died. Worker exit type: "
     "SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection error "
     "code 2. End of file.", "its process died (killed by a signal"),
    ("The actor is dead because it was killed by `ray.kill`.", "killed with ray.kill"),
])
def test_a_dead_supervisor_is_reported_with_what_killed_it(message, meaning):
    error = as_run_error(died(message), run_id="r7", store=None, lost=True,
                         completed=["a"])
    assert isinstance(error, SupervisorLostError) and error.run_id == "r7"
    text = str(error)
    assert text.startswith("run r7: its Supervisor was lost mid-run: ")
    assert meaning in text
    assert "pid 4242, ip 10.0.0.7" in text
    assert message.splitlines()[-1].strip().split(". ")[-1].rstrip(".") in text  # Ray's words
    assert f"ray logs actor --id {ACTOR.hex()}" in text
    assert "(completed before: a)" in text


def test_a_long_context_does_not_push_the_cause_out_of_the_message():
    # Before: the first 300 characters of Ray's message, which are the actor's
    # class, id, pid, name, namespace and address, and rarely the cause.
    error = ActorDiedError(ActorDiedErrorContext(
        error_message="Worker exit type: NODE_OUT_OF_MEMORY Worker exit detail: killed.",
        class_name="Supervisor", actor_id=ACTOR, pid=1, name="x" * 200,
        ray_namespace="y" * 200, node_ip_address="10.0.0.7"))
    assert "NODE_OUT_OF_MEMORY" in death_cause(error)


def test_an_unreachable_supervisor_and_one_ray_gave_no_cause_for():
    unreachable = death_cause(ActorUnavailableError("connection to the node lost", ACTOR))
    assert unreachable.startswith("it became unreachable")
    assert "[ActorUnavailableError: The actor" in unreachable
    assert "connection to the node lost" in unreachable
    bare = death_cause(ActorDiedError())
    assert "ActorDiedError, and Ray gave no cause" in bare
