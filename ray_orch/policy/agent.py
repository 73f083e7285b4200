"""``Agent``: a persona (role, goal, backstory) bound to a model.

An Agent is plain data plus two ways to talk to it (``chat``, ``achat``). In a process
each Agent becomes a pool of Ray actors (``pool_size`` members, each running up to
``max_concurrency`` attempts at once); ``Task.execute()`` calls it in-process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import weakref
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from ray_orch.core.errors import InvalidTaskFieldError
from ray_orch.core.secrets import key_ref, resolve_key
from ray_orch.model.client import LLMConfig, LLMResult, acomplete
from ray_orch.model.resolve import resolve_llm
from ray_orch.policy.fields import (
    AGENT_KEYWORDS,
    PROVIDER_OPTIONS,
    accept_keywords,
    check_agent,
    no_positional,
)

__all__ = ["Agent", "role_of"]


def role_of(agent: Any) -> str | None:
    """The role of an agent, or of any object with a string ``role`` (None otherwise,
    e.g. for a ``Mock``, whose attributes are all Mocks)."""
    role = getattr(agent, "role", None)
    return role if isinstance(role, str) else None


DEFAULT_MAX_POOL = 4
"""How far a default agent's pool grows with its backlog (one member to start)."""


class Agent:
    """An LLM agent.

    Args:
        role: who the agent is ("Data Extractor"); also its name in metrics.
        goal: what it tries to achieve.
        backstory: extra persona text for the system prompt.
        llm: a litellm model string, a dict of litellm options
            (``{"model": ..., "base_url": ..., "api_key": ..., "temperature": ...}``),
            or None for the default model (``RAY_ORCH_MODEL``, else the embedded one).
        base_url: the provider's base URL (OpenAI-compatible servers, Ollama, ...).
        api_key: the provider key; never logged, checkpointed or exported.
        tools: what the model may call: functions (sync or async; schema from type
            hints, description from the docstring), ``@tool`` functions, and
            ``ray_orch.MCP(...)`` servers. A task's own tools are added to these.
        max_tool_calls: tool calls one attempt may make (default 20; a task's own
            setting wins); past it the attempt fails with ``ToolLoopError``.
        tool_errors: ``"return"`` (default): a failed tool call goes back to the model
            as the tool's result; ``"raise"``: it fails the attempt (``ToolCallError``).
        instructions: extra standing instructions appended to the system prompt.
        name: a unique name (defaults to the role).
        pool_size: how many actors serve this agent in a process (its resource pool).
        max_pool_size: the pool may grow to this many actors while attempts queue behind
            busy members; members beyond ``pool_size`` go back to the registry after the
            run (reaped once idle). Default: an agent given none of ``pool_size``,
            ``max_concurrency`` and ``max_pool_size`` grows up to ``DEFAULT_MAX_POOL`` (4);
            one given any of them does not grow unless asked.
        max_concurrency: attempts one actor runs at once; past pool_size x this,
            dispatch waits (backpressure).
        timeout: seconds per model call.
        num_cpus, resources, scheduling_strategy: Ray placement of the pool members
            (``scheduling_strategy="SPREAD"`` spreads a pool across nodes).
        circuit_breaker: a ``CircuitBreaker`` guarding every task this agent runs.
        model: PraisonAI's name for ``llm`` (give one of them).
        reflection: PraisonAI's self-reflection: ``True`` (1 to 3 rounds) or
            ``{"min_iterations": m, "max_iterations": n}``; the agent judges each plain
            answer and answers again until satisfied.

        memory: ``True`` (the run's memory, else ``Memory()``) or a ``Memory``: the
            agent's outputs are remembered for the run's user and recalled into its
            prompts (``memory_config`` / ``embedder``: PraisonAI's and CrewAI's settings).
        knowledge: files or folders (``.md``, ``.txt``, ``.rst``, ``.pdf``) the agent draws
            on, recalled by meaning (CrewAI's ``knowledge_sources`` too).
        memory_tools: give the model ``remember`` / ``recall`` tools.

    Without a ``role``, the agent's ``name`` is its role (PraisonAI's agents are often
    named only). PraisonAI's other Agent keywords are accepted with a warning that they
    have no effect (``docs/PRAISONAI.md``).
        **llm_options: litellm / OpenAI request parameters sent with every call
            (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``stop``,
            ``response_format``, ...; see ``ray_orch.policy.fields.PROVIDER_OPTIONS``), the
            cluster-wide limits ``rpm`` / ``tpm`` / ``max_in_flight``, and
            ``extra_body={...}`` for provider-specific keys (merged into the request).

    Only ``role`` may be given by position. A keyword that is neither a parameter nor a
    provider option (``gaol=``) is an ``UnknownKeywordError`` naming the closest one;
    wrong types and ranges (``pool_size="2"``, a nan ``timeout``) are
    ``InvalidTaskFieldError``s naming the agent and the field.

    Example:
        >>> agent = Agent(role="Data Extractor", goal="Extract data from sources")
        >>> agent.role
        'Data Extractor'
    """

    def __init__(self, role: str | None = None, *positional: Any,
                 goal: str = "Complete the task well",
                 backstory: str = "", llm: str | dict[str, Any] | LLMConfig | None = None,
                 base_url: str | None = None, api_key: str | None = None,
                 tools: list[Callable[..., Any] | Any] | None = None, instructions: str = "",
                 name: str | None = None, pool_size: int | None = None,
                 max_concurrency: int | None = None,
                 timeout: float = 120.0, num_cpus: float = 0.0,
                 resources: dict[str, float] | None = None,
                 scheduling_strategy: Any = None, circuit_breaker: Any = None,
                 verbose: bool = False, max_tool_calls: int | None = None,
                 tool_errors: str | None = None, model: str | dict[str, Any] | None = None,
                 reflection: Any = None, max_pool_size: int | None = None,
                 **llm_options: Any) -> None:
        if role is None:
            role = name or "Assistant"
        if not isinstance(role, str) or not role.strip():
            raise InvalidTaskFieldError("Agent role must be a non-empty string",
                                        field="role")
        no_positional("Agent", positional, owner=role, first="role")
        from ray_orch.tools.spec import check_tool_settings, tool_specs

        tool_specs(tools, who=f"agent '{role}'")  # raises ToolDefinitionError
        check_tool_settings(f"agent '{role}'", max_tool_calls, tool_errors)
        self.role = role
        self.goal = goal
        self.backstory = backstory
        self.llm = llm
        self.base_url = base_url
        self.api_key = api_key
        self.tools = list(tools or [])
        self.max_tool_calls = max_tool_calls
        self.tool_errors = tool_errors
        self.instructions = instructions
        self.name = name or role
        # A default agent (no pool_size, max_concurrency nor max_pool_size given) grows
        # with its backlog up to DEFAULT_MAX_POOL members; limits a user sets hold as set.
        grows = pool_size is None and max_concurrency is None and max_pool_size is None
        pool_size = 1 if pool_size is None else pool_size
        max_concurrency = 64 if max_concurrency is None else max_concurrency
        if grows:
            max_pool_size = DEFAULT_MAX_POOL
        if max_pool_size is not None and (not isinstance(max_pool_size, int)
                                          or max_pool_size < pool_size):
            raise InvalidTaskFieldError(
                f"Agent '{role}': max_pool_size must be an int >= pool_size ({pool_size}), "
                f"got {max_pool_size!r}", field="max_pool_size")
        self.pool_size = pool_size
        self.max_pool_size = max_pool_size or pool_size
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self.scheduling_strategy = scheduling_strategy
        self.circuit_breaker = circuit_breaker
        self.verbose = verbose
        from ray_orch.policy.praison import agent_extras

        # PraisonAI's no-effect keywords warn once; the rest must be provider options.
        llm_options = agent_extras(self, model=model, reflection=reflection,
                                   options=llm_options)
        llm_options = accept_keywords("Agent", llm_options, known=_KNOWN, owner=role,
                                      extra=PROVIDER_OPTIONS)
        for key in AGENT_KEYWORDS - _KNOWN:  # read by other features; None if not given
            if not hasattr(self, key):
                setattr(self, key, llm_options.pop(key, None))
        self.llm_options = llm_options
        check_agent(self)
        from ray_orch.policy.recall import agent_settings

        agent_settings(self)  # memory=, knowledge=: checked, knowledge paths listed
        self._config: LLMConfig | None = None
        self.last_result: LLMResult | None = None

    def __repr__(self) -> str:
        return f"Agent(role={self.role!r}, goal={self.goal!r})"

    # -- model -------------------------------------------------------------------------

    @property
    def llm_config(self) -> LLMConfig:
        """The resolved model configuration (resolved once, on the driver).

        Raises:
            ModelNotConfiguredError: ``llm`` is None and no default model exists.
        """
        if self._config is not None:  # resolved on the driver, carried in the pickle
            return self._config
        config = _resolved.get(self)
        if config is None:
            config = resolve_llm(self.llm, base_url=self.base_url, api_key=self.api_key,
                                 who=f"agent '{self.role}'")
            if self.llm_options or config.timeout != self.timeout:
                config = dataclasses.replace(config, timeout=self.timeout,
                                             options={**config.options, **self.llm_options})
            _resolved[self] = config  # kept beside the agent: a run does not write onto it
        return config

    @property
    def model(self) -> str:
        """The model string this agent calls (no secrets)."""
        return self.llm_config.model

    def key(self) -> str:
        """A stable identity for pooling and caching: persona + model, no secrets."""
        ident = {"name": self.name, "role": self.role, "goal": self.goal,
                 "backstory": self.backstory, "instructions": self.instructions,
                 "llm": self.llm_config.describe(),
                 "tools": [getattr(t, "__name__", repr(t)) for t in self.tools],
                 "max_tool_calls": self.max_tool_calls, "tool_errors": self.tool_errors}
        blob = json.dumps(ident, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def system_prompt(self) -> str:
        """The system message that sets the persona."""
        parts = [f"You are {self.role}."]
        if self.backstory:
            parts.append(self.backstory)
        parts.append(f"Your goal: {self.goal}")
        if self.instructions:
            parts.append(self.instructions)
        return "\n".join(parts)

    def messages(self, prompt: str) -> list[dict[str, Any]]:
        """The chat messages for one prompt (after the earlier turns of a ``chat``)."""
        from ray_orch.policy.agent_chat import history_for

        return [{"role": "system", "content": self.system_prompt()}, *history_for(self),
                {"role": "user", "content": prompt}]

    # -- talking -----------------------------------------------------------------------

    def chat(self, prompt: str, *, output_schema: type[BaseModel] | None = None,
             output_json: type[BaseModel] | None = None,
             output_pydantic: type[BaseModel] | None = None, tools: list[Any] | None = None,
             **praison: Any) -> str:
        """Say something to the agent and return its answer: one turn of a conversation
        the agent keeps (``chat_history``), with its tools and guardrails.

        Args:
            prompt: the user message.
            output_schema: a pydantic model the reply must follow (JSON text comes back);
                PraisonAI's ``output_json`` / ``output_pydantic`` are its aliases.
            tools: tools for this turn, beside the agent's own.
            **praison: PraisonAI's other ``chat`` keywords (no effect; warned once).

        Returns:
            The reply text.

        Raises:
            TaskFailedError: the model, a tool or a guardrail failed for good.

        Example:
            >>> from ray_orch.testing import StubLLMServer
            >>> with StubLLMServer(reply="Hi!") as stub:
            ...     Agent(role="Writer", goal="Write", llm=stub.llm).chat("Say hi")
            'Hi!'
        """
        from ray_orch.core.sync import run_sync

        return run_sync(self.achat(prompt, output_schema=output_schema,  # type: ignore[no-any-return]
                                   output_json=output_json, output_pydantic=output_pydantic,
                                   tools=tools, **praison))

    def start(self, prompt: str | None = None, **kwargs: Any) -> str:
        """PraisonAI's name for ``chat``."""
        return self.chat(prompt, **kwargs)  # type: ignore[arg-type]

    def run(self, prompt: str | None = None, **kwargs: Any) -> str:
        """PraisonAI's silent ``start``: the same here."""
        return self.chat(prompt, **kwargs)  # type: ignore[arg-type]

    async def astart(self, prompt: str | None = None, **kwargs: Any) -> str:
        """PraisonAI's name for ``achat``."""
        return await self.achat(prompt, **kwargs)  # type: ignore[arg-type]

    async def arun(self, prompt: str | None = None, **kwargs: Any) -> str:
        """PraisonAI's silent ``astart``: the same here."""
        return await self.achat(prompt, **kwargs)  # type: ignore[arg-type]

    async def achat(self, prompt: str, *, output_schema: type[BaseModel] | None = None,
                    output_json: type[BaseModel] | None = None,
                    output_pydantic: type[BaseModel] | None = None,
                    tools: list[Any] | None = None, **praison: Any) -> str:
        """Async form of ``chat``; same contract."""
        from ray_orch.policy.agent_chat import CHAT_NO_EFFECT, converse
        from ray_orch.policy.praison import no_effect

        no_effect("Agent.chat", CHAT_NO_EFFECT, praison)
        schema = output_schema or output_pydantic or output_json
        output = await converse(self, prompt, schema=schema, tools=tools)
        return output.raw

    def clear_history(self) -> None:
        """Forget the conversation (PraisonAI's ``clear_history``)."""
        self.chat_history: list[dict[str, Any]] = []

    async def acomplete(self, prompt: str, *,
                        output_schema: type[BaseModel] | dict[str, Any] | None = None,
                        timeout: float | None = None,
                        on_token: Callable[[str], None] | None = None) -> LLMResult:
        """Ask once and return the reply with its accounting (tokens, cost, duration);
        with ``on_token``, the answer streams to it piece by piece."""
        result = await acomplete(self.llm_config, self.messages(prompt), schema=output_schema,
                                 timeout=timeout, on_token=on_token)
        rounds = getattr(self, "reflection_rounds", None)
        if rounds is not None and output_schema is None:
            from ray_orch.policy.praison import reflect

            result = await reflect(self, prompt, result, rounds)
        self.last_result = result
        return result

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["last_result"] = None
        # The model as resolved here (the driver's environment), for the cluster to use.
        state["_config"] = self._config or _resolved.get(self)
        state["chat_history"] = []  # the driver's conversation stays there
        # Stored (a paused run's definition): keys as references, never their values.
        state["api_key"] = key_ref(state.get("api_key"))
        if isinstance(state.get("llm"), dict) and "api_key" in state["llm"]:
            state["llm"] = {**state["llm"], "api_key": key_ref(state["llm"]["api_key"])}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["api_key"] = resolve_key(state.get("api_key"))
        if isinstance(state.get("llm"), dict) and "api_key" in state["llm"]:
            state["llm"] = {**state["llm"], "api_key": resolve_key(state["llm"]["api_key"])}
        self.__dict__.update(state)


# Each agent's resolved model, beside it (weakly): resolved once, on the driver.
_resolved: weakref.WeakKeyDictionary[Agent, LLMConfig] = weakref.WeakKeyDictionary()

_KNOWN = frozenset(inspect.signature(Agent.__init__).parameters) - {
    "self", "positional", "llm_options"}
