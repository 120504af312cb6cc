"""The host side: build agents from what travelled, run requests, answer in JSON data.

Shared by every backend (the in-process fake and Ray), so that they differ only in transport.
Nothing here knows about the caller's trio loop: a host runs its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import trio

from .._agent import Agent, AgentSpec
from .._errors import AgentError, InvalidArgumentError
from .._messages import ApprovalDecision, ErrorInfo, Message
from .._models import Model
from .._serde import dump, load

ModelFactories = Mapping[str, Callable[[], Model]]
"""Model ids a host can build locally (``AgentSpec.model`` → a zero-argument factory)."""


def check_factory_path(path: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``path`` looks like ``"module:function"``."""
    module, sep, attr = path.partition(":")
    if (
        not sep
        or not module
        or not attr
        or not all(part.isidentifier() for part in (*module.split("."), *attr.split(".")))
    ):
        raise InvalidArgumentError(
            f"a remote factory must be an importable 'module:function' path, got {path!r}"
        )


def resolve_factory(path: str) -> Callable[[], Any]:
    """Import ``"module:function"`` (``function`` may be dotted) and return it."""
    check_factory_path(path)
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InvalidArgumentError(
                f"remote factory {path!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(obj):
        raise InvalidArgumentError(f"remote factory {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def build_agent(target: Any, models: ModelFactories) -> Agent:
    """Build an agent from the wire form of a target: ``{"factory": "module:function"}`` or
    ``{"spec": <AgentSpec data>}``."""
    if isinstance(target, dict) and set(target) == {"factory"}:
        agent = resolve_factory(target["factory"])()
        if not isinstance(agent, Agent):
            raise InvalidArgumentError(
                f"remote factory {target['factory']!r} must return an Agent, "
                f"got {type(agent).__name__}"
            )
        return agent
    if isinstance(target, dict) and set(target) == {"spec"}:
        spec = load(target["spec"], AgentSpec)
        if spec.model is not None and spec.model in models:
            model = models[spec.model]()
        else:
            from ..models import resolve_model

            if spec.model is None:
                raise InvalidArgumentError(
                    f"AgentSpec {spec.name!r} names no model and the host has no default; "
                    f"models on this host: {sorted(models) or 'none'}"
                )
            model = resolve_model(spec.model)
        return Agent.from_spec(spec, model)
    raise InvalidArgumentError(
        f"a remote target must be {{'factory': ...}} or {{'spec': ...}}, got {target!r}"
    )


def error_data(error: BaseException) -> Any:
    """The wire form of a failure: an :class:`ErrorInfo`."""
    if isinstance(error, AgentError):
        info = error.info()
    else:
        info = ErrorInfo(type=type(error).__name__, message=str(error))
    return dump(info)


async def serve_request(agent: Agent, payload: Any) -> dict[str, Any]:
    """Run one request on ``agent``; the reply is ``{"result": ...}`` or ``{"error": ...}``.

    The payload is a list of messages (a run), or ``{"resume": [decisions]}`` (the
    :meth:`~trio_agents.Agent.resume` of the run that waits for approval on this host).
    Cancellation goes on up (the caller asked for it, or the host is going away).
    """
    try:
        if isinstance(payload, dict) and set(payload) == {"resume"}:
            decisions = load(payload["resume"], list[ApprovalDecision])
            result = await agent.resume(decisions)
        else:
            messages = load(payload, list[Message])
            result = await agent.run(messages)
    except trio.Cancelled:
        raise
    except Exception as exc:
        return {"error": error_data(exc)}
    return {"result": dump(result)}
