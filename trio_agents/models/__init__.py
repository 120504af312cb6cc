"""Real model providers, model ids, prices, and the switch that forbids real requests.

Providers live one per submodule behind an extra, and are imported only when used:

* :mod:`trio_agents.models.openai` (``pip install 'trio-agents[openai]'``): OpenAI chat
  completions, and every OpenAI-compatible server (llama.cpp, vLLM, Ollama, ...) by ``base_url``;
* :mod:`trio_agents.models.anthropic` (``pip install 'trio-agents[anthropic]'``): the Anthropic
  Messages API.

:func:`resolve_model` turns a model id (``"openai:gpt-4o-mini"``,
``"anthropic:claude-haiku-4-5"``, ``"openai:my-model@http://127.0.0.1:8080/v1"``) into a
:class:`~trio_agents.Model`. Importing this package imports no SDK.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import _errors
from ._prices import CostEstimate, ModelPrice, PriceTable, cost_for

if TYPE_CHECKING:
    from .._models import Model

__all__ = [
    "ALLOW_MODEL_REQUESTS",
    "PROVIDERS",
    "CostEstimate",
    "ModelPrice",
    "ModelRequestsForbidden",
    "PriceTable",
    "check_model_requests_allowed",
    "cost_for",
    "override_allow_model_requests",
    "parse_model_id",
    "resolve_model",
]


def _env_allows() -> bool:
    value = os.environ.get("TRIO_AGENTS_ALLOW_MODEL_REQUESTS", "1").strip().lower()
    return value not in {"0", "false", "no", "off"}


ALLOW_MODEL_REQUESTS: bool = _env_allows()
"""Whether real providers may send requests (default ``True``; the environment variable
``TRIO_AGENTS_ALLOW_MODEL_REQUESTS=0`` starts it at ``False``). Set it, or use
:func:`override_allow_model_requests`, to make a test suite fail on any real model call."""

PROVIDERS: tuple[str, ...] = ("openai", "anthropic")
"""The provider prefixes :func:`resolve_model` knows."""

_EXTRAS = {"openai": "openai", "anthropic": "anthropic"}


class ModelRequestsForbidden(_errors.UsageError):
    """A real provider was asked to send a request while :data:`ALLOW_MODEL_REQUESTS` is off."""


def check_model_requests_allowed(model_id: str) -> None:
    """Raise :class:`ModelRequestsForbidden` unless real model requests are allowed.

    Every real provider calls this before it sends anything.
    """
    if not ALLOW_MODEL_REQUESTS:
        raise ModelRequestsForbidden(
            f"real model requests are forbidden (trio_agents.models.ALLOW_MODEL_REQUESTS is "
            f"False) but {model_id!r} was asked to send one; use a test double from "
            "trio_agents.testing, or allow requests with "
            "trio_agents.models.override_allow_model_requests(True)"
        )


@contextmanager
def override_allow_model_requests(allow: bool) -> Iterator[None]:
    """Set :data:`ALLOW_MODEL_REQUESTS` to ``allow`` inside the block, then restore it.

    The switch is process-wide (it is a module global, not a context variable), so use it
    around a whole test or program, not around one task among many.
    """
    global ALLOW_MODEL_REQUESTS
    if not isinstance(allow, bool):
        raise _errors.InvalidArgumentError(f"allow must be True or False, got {allow!r}")
    previous = ALLOW_MODEL_REQUESTS
    ALLOW_MODEL_REQUESTS = allow
    try:
        yield
    finally:
        ALLOW_MODEL_REQUESTS = previous


def parse_model_id(model_id: str) -> tuple[str, str, str | None]:
    """Split a model id into ``(provider, model_name, base_url)``.

    The forms are ``"PROVIDER:MODEL"`` and ``"PROVIDER:MODEL@URL"`` where ``URL`` starts with
    ``http://`` or ``https://`` (a ``@`` not followed by a URL stays part of the model name,
    as in ``"claude-3-5-sonnet@20240620"``).

    :raises InvalidArgumentError: the id has no ``provider:`` prefix, the provider is not one
        of :data:`PROVIDERS` (the message suggests the closest), or the model name is empty.
    """
    if not isinstance(model_id, str):
        raise _errors.InvalidArgumentError(f"model_id must be a str, got {type(model_id).__name__}")
    provider, sep, rest = model_id.partition(":")
    if not sep:
        raise _errors.InvalidArgumentError(
            f"model_id {model_id!r} has no provider prefix; use 'PROVIDER:MODEL' with PROVIDER "
            f"one of {', '.join(PROVIDERS)} (e.g. 'openai:gpt-4o-mini')"
        )
    provider = provider.strip().lower()
    if provider not in PROVIDERS:
        close = difflib.get_close_matches(provider, PROVIDERS, n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _errors.InvalidArgumentError(
            f"model_id {model_id!r} names unknown provider {provider!r}{hint} "
            f"(known providers: {', '.join(PROVIDERS)})"
        )
    name, base_url = rest, None
    for scheme in ("@http://", "@https://"):
        head, found, tail = rest.rpartition(scheme)
        if found:
            name, base_url = head, scheme[1:] + tail
            break
    if not name:
        raise _errors.InvalidArgumentError(f"model_id {model_id!r} has an empty model name")
    return provider, name, base_url


def _provider_module(provider: str) -> Any:
    try:
        return importlib.import_module(f"{__name__}.{provider}")
    except ImportError as exc:
        # Name the extra once, and the module that is missing (the provider module's own
        # ImportError already names the extra: it is kept as the cause, not repeated).
        missing = exc
        while missing.name is None and isinstance(missing.__cause__, ImportError):
            missing = missing.__cause__
        what = f" (missing module: {missing.name})" if missing.name else ""
        raise ImportError(
            f"the {provider!r} provider needs its SDK: pip install "
            f"'trio-agents[{_EXTRAS[provider]}]'{what}",
            name=missing.name,
        ) from exc


def resolve_model(
    model_id: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    **kwargs: Any,
) -> Model:
    """Build the model a model id names; the provider's SDK is imported only now.

    :param model_id: ``"openai:MODEL"``, ``"anthropic:MODEL"``, or either with ``@URL``
        appended for a compatible server (see :func:`parse_model_id`).
    :param base_url: the server to talk to; overrides a ``@URL`` in the id. Without either,
        the provider reads ``OPENAI_BASE_URL`` or ``ANTHROPIC_BASE_URL`` and treats it the
        same way.
    :param api_key: the key; by default the provider's environment variable
        (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``).
    :param kwargs: passed on to :class:`~trio_agents.models.openai.OpenAIModel` or
        :class:`~trio_agents.models.anthropic.AnthropicModel` (``read_timeout``, ...).
    :raises InvalidArgumentError: a malformed id or an unknown provider.
    :raises ImportError: the provider's extra is not installed (the message names it).
    """
    provider, name, url = parse_model_id(model_id)
    if base_url is not None:
        url = base_url
    module = _provider_module(provider)
    if provider == "openai":
        model: Model = module.OpenAIModel(name, base_url=url, api_key=api_key, **kwargs)
    else:
        model = module.AnthropicModel(name, base_url=url, api_key=api_key, **kwargs)
    return model
