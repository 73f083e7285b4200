"""Malformed definitions for the red-team suite (tests/integration/test_redteam.py).

Each case is code that must raise a typed ray-orch error naming the task (if any) and
the field, before Ray starts and before any model call. Run as a script, it runs every
case in this one process (no Ray session) and prints one JSON line per case.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass

# (id, code, error class, task, field); the code sees Agent, Task, Process, a (an
# Agent on the stub), stub, tmp (a directory), Model (a pydantic model), and
# W(**fields) / W2(**fields), which run a workflow whose task "t" has these fields
# (W2: after a task "u").
CASES: list[tuple[str, str, str, str | None, str | None]] = [
    # keywords and positions
    ("task_typo_context", "Task(description='x', agent=a, contex=['y'])",
     "UnknownKeywordError", None, "contex"),
    ("task_typo_expected_output", "Task(description='x', agent=a, expected_outpt='y')",
     "UnknownKeywordError", None, "expected_outpt"),
    ("task_typo_named", "Task(description='x', name='t', agent=a, guardrail_s=[])",
     "UnknownKeywordError", "t", "guardrail_s"),
    ("task_agent_by_position", "Task('x', a)", "InvalidTaskFieldError", None, "description"),
    ("agent_typo_goal", "Agent(role='r', gaol='g')", "UnknownKeywordError", None, "gaol"),
    ("agent_unknown_provider_option", "Agent(role='r', llm=stub.llm, frobnicate=1)",
     "UnknownKeywordError", None, "frobnicate"),
    ("agent_goal_by_position", "Agent('r', 'g')", "InvalidTaskFieldError", None, "role"),
    ("process_unknown_keyword", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "checkpoint='x')", "UnknownKeywordError", None, "checkpoint"),
    ("process_extra_positional", "Process({'t': Task(description='x', agent=a)}, [a], None, 1)",
     "InvalidTaskFieldError", None, "tasks"),
    ("run_unknown_keyword", "Process(tasks={'t': Task(description='x', agent=a)})"
     ".workflow(resum=True)", "UnknownKeywordError", None, "resum"),
    # references and shapes
    ("context_string", "W2(context='u')", "InvalidTaskFieldError", "t", "context"),
    ("context_int_entry", "W2(context=[5])", "InvalidTaskFieldError", "t", "context"),
    ("context_unknown_task", "W2(context=['nope'])", "UnknownTaskError", "t", "context"),
    ("next_tasks_string", "W2(next_tasks='u')", "InvalidTaskFieldError", "t", "next_tasks"),
    ("condition_list", "W2(task_type='decision', condition=['u'])", "InvalidTaskFieldError",
     "t", "condition"),
    ("condition_value_int", "W2(task_type='decision', condition={'yes': 5})",
     "InvalidTaskFieldError", "t", "condition['yes']"),
    ("condition_value_nested", "W2(task_type='decision', condition={'yes': [['u']]})",
     "InvalidTaskFieldError", "t", "condition['yes']"),
    ("condition_value_unknown", "W2(task_type='decision', condition={'yes': ['zzz']})",
     "UnknownTaskError", "t", "condition['yes']"),
    ("condition_empty_key", "W2(task_type='decision', condition={'': ['u']})",
     "InvalidTaskFieldError", "t", "condition"),
    ("condition_on_plain_task", "W2(condition={'yes': ['u']})", "InvalidTaskFieldError", "t",
     "condition"),
    ("decision_without_condition", "W(task_type='decision')", "InvalidTaskFieldError", "t",
     "condition"),
    ("task_type_bogus", "W(task_type='parallel')", "InvalidTaskFieldError", "t", "task_type"),
    ("context_cycle", "Process(tasks={'x': Task(description='x', agent=a, context=['y']), "
     "'y': Task(description='y', agent=a, context=['x'])}).workflow()",
     "UnboundedCycleError", None, "context"),
    ("duplicate_names", "Process(tasks=[Task(description='x', agent=a, name='t'), "
     "Task(description='y', agent=a, name='t')]).workflow()", "DuplicateTaskError", "t", "name"),
    # numbers: types, ranges, nan and inf
    ("max_retries_negative", "W(max_retries=-1)", "InvalidTaskFieldError", "t", "max_retries"),
    ("max_retries_float", "W(max_retries=1.5)", "InvalidTaskFieldError", "t", "max_retries"),
    ("max_retries_bool", "W(max_retries=True)", "InvalidTaskFieldError", "t", "max_retries"),
    ("max_retries_str", "W(max_retries='3')", "InvalidTaskFieldError", "t", "max_retries"),
    ("validation_steps_negative", "W(validation_steps=-1)", "InvalidTaskFieldError", "t",
     "validation_steps"),
    ("retry_delay_nan", "W(retry_delay=math.nan)", "InvalidTaskFieldError", "t", "retry_delay"),
    ("retry_delay_inf", "W(retry_delay=math.inf)", "InvalidTaskFieldError", "t", "retry_delay"),
    ("retry_delay_negative", "W(retry_delay=-0.1)", "InvalidTaskFieldError", "t",
     "retry_delay"),
    ("timeout_nan", "W(timeout=math.nan)", "InvalidTaskFieldError", "t", "timeout"),
    ("timeout_inf", "W(timeout=math.inf)", "InvalidTaskFieldError", "t", "timeout"),
    ("timeout_zero", "W(timeout=0)", "InvalidTaskFieldError", "t", "timeout"),
    ("timeout_negative", "W(timeout=-5)", "InvalidTaskFieldError", "t", "timeout"),
    ("timeout_str", "W(timeout='10')", "InvalidTaskFieldError", "t", "timeout"),
    ("cache_ttl_negative", "W(cache_ttl=-1)", "InvalidTaskFieldError", "t", "cache_ttl"),
    ("context_budget_zero", "W(context_budget=0)", "InvalidTaskFieldError", "t",
     "context_budget"),
    ("max_visits_zero", "W(max_visits=0)", "InvalidTaskFieldError", "t", "max_visits"),
    ("max_iterations_zero", "W(task_type='loop', loop_data=[1, 2], max_iterations=0)",
     "InvalidTaskFieldError", "t", "max_iterations"),
    # other task fields
    ("context_overflow_bogus", "W(context_overflow='drop')", "InvalidTaskFieldError", "t",
     "context_overflow"),
    ("output_json_dict", "W(output_json=dict)", "InvalidTaskFieldError", "t", "output_json"),
    ("output_pydantic_instance", "W(output_pydantic=Model(x=1))", "InvalidTaskFieldError", "t",
     "output_pydantic"),
    ("guardrails_string", "W(guardrails='len > 3')", "InvalidTaskFieldError", "t",
     "guardrails"),
    ("guardrails_int_entry", "W(guardrails=[5])", "InvalidTaskFieldError", "t",
     "guardrails[0]"),
    ("agent_string", "Process(tasks={'t': Task(description='x', agent='writer')}).workflow()",
     "InvalidTaskFieldError", "t", "agent"),
    ("fallback_agent_int", "W(fallback_agent=5)", "InvalidTaskFieldError", "t",
     "fallback_agent"),
    ("description_empty", "Process(tasks={'t': Task(description='  ', agent=a)}).workflow()",
     "InvalidTaskFieldError", "t", "description"),
    ("description_int", "Process(tasks={'t': Task(description=5, agent=a)}).workflow()",
     "InvalidTaskFieldError", "t", "description"),
    ("expected_output_int", "W(expected_output=5)", "InvalidTaskFieldError", "t",
     "expected_output"),
    ("async_execution_str", "W(async_execution='yes')", "InvalidTaskFieldError", "t",
     "async_execution"),
    ("handle_missing_context_int", "W(handle_missing_context=1)", "InvalidTaskFieldError",
     "t", "handle_missing_context"),
    ("context_fields_string", "W(context_fields='summary')", "InvalidTaskFieldError", "t",
     "context_fields"),
    ("circuit_breaker_str", "W(circuit_breaker='strict')", "InvalidTaskFieldError", "t",
     "circuit_breaker"),
    # loops
    ("loop_data_on_plain_task", "W(loop_data=[1, 2])", "InvalidTaskFieldError", "t",
     "loop_data"),
    ("loop_data_int", "W(task_type='loop', loop_data=5)", "InvalidTaskFieldError", "t",
     "loop_data"),
    ("loop_data_missing_file", "W(task_type='loop', loop_data=tmp + '/nope.csv')",
     "LoopDataError", "t", "loop_data"),
    ("loop_csv_row_too_long", "W(task_type='loop', description='Visit {city}', "
     "loop_data=csv_file('city,country\\nParis,France\\nRome,Italy,extra\\n'))",
     "LoopDataError", "t", "loop_data"),
    ("loop_csv_row_too_short", "W(task_type='loop', description='Visit {city}', "
     "loop_data=csv_file('city,country\\nParis\\n'))", "LoopDataError", "t", "loop_data"),
    ("loop_ragged_bogus", "W(task_type='loop', loop_data=[1], loop_ragged='drop')",
     "InvalidTaskFieldError", "t", "loop_ragged"),
    ("loop_placeholder_without_column", "W(task_type='loop', description='Visit {city}', "
     "loop_data=[{'town': 'Paris'}])", "LoopDataError", "t", "description"),
    ("loop_empty_list", "W(task_type='loop', loop_data=[])", "LoopDataError", "t",
     "loop_data"),
    ("loop_json_not_list", "W(task_type='loop', loop_data=json_file({'a': 1}))",
     "LoopDataError", "t", "loop_data"),
    # agents
    ("agent_pool_size_str", "Agent(role='r', pool_size='2')", "InvalidTaskFieldError", None,
     "pool_size"),
    ("agent_pool_size_float", "Agent(role='r', pool_size=1.5)", "InvalidTaskFieldError", None,
     "pool_size"),
    ("agent_pool_size_zero", "Agent(role='r', pool_size=0)", "InvalidTaskFieldError", None,
     "pool_size"),
    ("agent_max_concurrency_bool", "Agent(role='r', max_concurrency=True)",
     "InvalidTaskFieldError", None, "max_concurrency"),
    ("agent_llm_int", "Agent(role='r', llm=123)", "InvalidTaskFieldError", None, "llm"),
    ("agent_llm_dict_model_int", "Agent(role='r', llm={'model': 5})", "InvalidTaskFieldError",
     None, "llm"),
    ("agent_llm_dict_unknown_option", "Agent(role='r', llm={'model': 'openai/x', "
     "'temprature': 0.1})", "UnknownKeywordError", None, "llm"),
    ("agent_llm_dict_bad_option", "Agent(role='r', llm={'model': 'openai/x', "
     "'max_tokens': -5})", "InvalidTaskFieldError", None, "max_tokens"),
    ("agent_timeout_nan", "Agent(role='r', timeout=math.nan)", "InvalidTaskFieldError", None,
     "timeout"),
    ("agent_timeout_negative", "Agent(role='r', timeout=-1)", "InvalidTaskFieldError", None,
     "timeout"),
    ("agent_num_cpus_negative", "Agent(role='r', num_cpus=-1)", "InvalidTaskFieldError", None,
     "num_cpus"),
    ("agent_resources_str", "Agent(role='r', resources={'GPU': 'one'})",
     "InvalidTaskFieldError", None, "resources"),
    ("agent_temperature_str", "Agent(role='r', temperature='hot')", "InvalidTaskFieldError",
     None, "temperature"),
    ("agent_max_tokens_zero", "Agent(role='r', max_tokens=0)", "InvalidTaskFieldError", None,
     "max_tokens"),
    ("agent_extra_body_str", "Agent(role='r', extra_body='x')", "InvalidTaskFieldError", None,
     "extra_body"),
    ("agent_role_empty", "Agent(role='')", "InvalidTaskFieldError", None, "role"),
    ("agent_goal_int", "Agent(role='r', goal=5)", "InvalidTaskFieldError", None, "goal"),
    # processes
    ("process_tasks_str", "Process(tasks='abc')", "InvalidTaskFieldError", None, "tasks"),
    ("process_tasks_empty_dict", "Process(tasks={})", "InvalidTaskFieldError", None, "tasks"),
    ("process_tasks_empty_list", "Process(tasks=[]).workflow()", "InvalidTaskFieldError", None,
     "tasks"),
    ("process_no_tasks", "Process()", "InvalidTaskFieldError", None, "tasks"),
    ("process_task_not_task", "Process(tasks={'t': 'do it'})", "InvalidTaskFieldError", "t",
     "tasks"),
    ("process_on_failure_bogus", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "on_failure='bogus')", "InvalidTaskFieldError", None, "on_failure"),
    ("process_max_visits_zero", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "max_visits=0)", "InvalidTaskFieldError", None, "max_visits"),
    ("process_max_steps_negative", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "max_steps=-1)", "InvalidTaskFieldError", None, "max_steps"),
    ("process_budget_usd_nan", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "budget_usd=math.nan)", "InvalidTaskFieldError", None, "budget_usd"),
    ("process_budget_tokens_float", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "budget_tokens=1.5)", "InvalidTaskFieldError", None, "budget_tokens"),
    ("process_agents_str", "Process(tasks={'t': Task(description='x', agent=a)}, agents='a')",
     "InvalidTaskFieldError", None, "agents"),
    ("process_name_empty", "Process(tasks={'t': Task(description='x', agent=a)}, name='')",
     "InvalidTaskFieldError", None, "name"),
    ("process_name_lone_surrogate", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "name='wf\\udcff')", "InvalidTaskFieldError", None, "name"),
    ("task_name_lone_surrogate", "Process(tasks={'t\\udcff': Task(description='x', agent=a)})",
     "InvalidTaskFieldError", None, "tasks"),
    ("agent_role_lone_surrogate", "Agent(role='W\\udcff')", "InvalidTaskFieldError", None,
     "role"),
    ("process_progress_str", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "progress='yes')", "InvalidTaskFieldError", None, "progress"),
    ("process_manager_llm_int", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "agents=[a], manager_llm=123).hierarchical()", "InvalidTaskFieldError", None,
     "manager_llm"),
    ("process_metrics_host_int", "Process(tasks={'t': Task(description='x', agent=a)}, "
     "metrics_host=5)", "InvalidTaskFieldError", None, "metrics_host"),
    ("agent_scheduling_strategy_int", "Agent(role='r', scheduling_strategy=5)",
     "InvalidTaskFieldError", None, "scheduling_strategy"),
    ("agent_circuit_breaker_str", "Agent(role='r', circuit_breaker='strict')",
     "InvalidTaskFieldError", None, "circuit_breaker"),
    ("execute_guardrail_int", "Task(description='x', name='t', agent=a, guardrail=5).execute()",
     "InvalidTaskFieldError", "t", "guardrails[0]"),
    ("execute_max_retries_negative", "Task(description='x', name='t', agent=a, "
     "max_retries=-1).execute()", "InvalidTaskFieldError", "t", "max_retries"),
    ("execute_timeout_nan", "Task(description='x', name='t', agent=a, "
     "timeout=math.nan).execute()", "InvalidTaskFieldError", "t", "timeout"),
    ("run_id_empty", "Process(tasks={'t': Task(description='x', agent=a)}).workflow(run_id='')",
     "InvalidTaskFieldError", None, "run_id"),
    ("string_guardrail_without_model", "Task(description='x', name='t', agent=Chat(), "
     "guardrails=['must be polite']).execute()", "InvalidTaskFieldError", "t", "guardrails"),
    ("resume_without_checkpoint", "Process(tasks={'t': Task(description='x', agent=a)})"
     ".workflow(resume=True)", "InvalidTaskFieldError", None, "resume"),
    ("resume_int", "Process(tasks={'t': Task(description='x', agent=a)}, checkpoint_dir=tmp)"
     ".workflow(resume=5)", "InvalidTaskFieldError", None, "resume"),
]


@dataclass(kw_only=True)
class Outcome:
    """What one case did."""

    id: str
    error: str | None
    is_ray_orch: bool
    task: str | None
    fields: list[str]
    message: str
    requests: int
    ray_running: bool


def _fields_of(exc: BaseException) -> tuple[list[str | None], list[str | None]]:
    problems = getattr(exc, "problems", None) or [exc]
    return ([getattr(p, "task", None) for p in problems],
            [getattr(p, "field", None) for p in problems])


def run_cases() -> list[Outcome]:
    """Run every case here (no Ray is started by a case that is refused statically)."""
    from pydantic import BaseModel

    import ray_orch
    from ray_orch import Agent, Process, Task
    from ray_orch.core.proc import ray_is_running
    from ray_orch.testing import StubLLMServer

    class Model(BaseModel):
        x: int

    tmp = tempfile.mkdtemp()
    outcomes = []
    with StubLLMServer() as stub:
        a = Agent(role="Writer", llm=stub.llm)

        def W(**fields):
            fields.setdefault("description", "Do it")
            return Process(tasks={"t": Task(agent=a, **fields)}, agents=[a]).workflow()

        def W2(**fields):
            fields.setdefault("description", "Do it")
            return Process(tasks={"u": Task(description="Up", agent=a),
                                  "t": Task(agent=a, **fields)}, agents=[a]).workflow()

        def csv_file(text):
            path = os.path.join(tmp, f"data{len(os.listdir(tmp))}.csv")
            with open(path, "w") as f:
                f.write(text)
            return path

        def json_file(value):
            path = os.path.join(tmp, f"data{len(os.listdir(tmp))}.json")
            with open(path, "w") as f:
                json.dump(value, f)
            return path

        class Chat:  # any object with chat(prompt) may be an agent
            calls = 0

            def chat(self, prompt):
                Chat.calls += 1
                return "hello"

        scope = {"Chat": Chat, "Agent": Agent, "Task": Task, "Process": Process, "a": a, "stub": stub,
                 "tmp": tmp, "Model": Model, "W": W, "W2": W2, "math": math,
                 "csv_file": csv_file, "json_file": json_file}
        for case_id, code, *_ in CASES:
            before = stub.count()
            try:
                eval(code, dict(scope))
                error: BaseException | None = None
            except Exception as exc:
                error = exc
            tasks, fields = _fields_of(error) if error else ([], [])
            outcomes.append(Outcome(
                id=case_id, error=type(error).__name__ if error else None,
                is_ray_orch=isinstance(error, ray_orch.RayOrchError),
                task=next((t for t in tasks if t), None),
                fields=[f for f in fields if f], message=str(error),
                requests=stub.count() - before + Chat.calls, ray_running=ray_is_running()))
            Chat.calls = 0
    return outcomes


if __name__ == "__main__":
    for outcome in run_cases():
        print(json.dumps(outcome.__dict__))
    sys.stdout.flush()
