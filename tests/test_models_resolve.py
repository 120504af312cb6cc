"""Model ids, lazy provider import, the forbid switch, and prices."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import trio_agents.models as models
from trio_agents import Cost, InvalidArgumentError, Usage
from trio_agents.models import (
    CostEstimate,
    ModelPrice,
    ModelRequestsForbidden,
    PriceTable,
    check_model_requests_allowed,
    cost_for,
    override_allow_model_requests,
    parse_model_id,
    resolve_model,
)

# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini", None)),
        ("anthropic:claude-haiku-4-5", ("anthropic", "claude-haiku-4-5", None)),
        ("OpenAI:gpt-4o", ("openai", "gpt-4o", None)),
        (
            "openai:smollm2@http://127.0.0.1:8080/v1",
            ("openai", "smollm2", "http://127.0.0.1:8080/v1"),
        ),
        (
            "anthropic:claude-3-5-sonnet@20240620@https://proxy.example/a",
            ("anthropic", "claude-3-5-sonnet@20240620", "https://proxy.example/a"),
        ),
        ("anthropic:claude-3-5-sonnet@20240620", ("anthropic", "claude-3-5-sonnet@20240620", None)),
        ("openai:org/model:v1", ("openai", "org/model:v1", None)),
    ],
)
def test_parse_model_id(model_id: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_model_id(model_id) == expected


def test_unknown_provider_suggests_the_closest() -> None:
    with pytest.raises(InvalidArgumentError, match=r"did you mean 'openai'\?"):
        parse_model_id("opnai:gpt-4o")
    with pytest.raises(InvalidArgumentError, match=r"did you mean 'anthropic'\?"):
        resolve_model("antropic:claude")
    with pytest.raises(InvalidArgumentError, match="known providers: openai, anthropic"):
        parse_model_id("zzz:model")


@pytest.mark.parametrize("bad", ["gpt-4o", "openai:", "openai:@http://x"])
def test_malformed_ids_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="model_id"):
        parse_model_id(bad)


def test_resolve_model_builds_each_provider() -> None:
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    from trio_agents.models.anthropic import AnthropicModel
    from trio_agents.models.openai import OpenAIModel

    plain = resolve_model("openai:gpt-4o-mini", api_key="k")
    assert isinstance(plain, OpenAIModel)
    assert plain.model_id == "openai:gpt-4o-mini"
    local = resolve_model("openai:smollm2@http://127.0.0.1:9/v1")
    assert isinstance(local, OpenAIModel)
    assert (local.model_name, local.base_url) == ("smollm2", "http://127.0.0.1:9/v1")
    assert local.model_id == "openai:smollm2@http://127.0.0.1:9/v1"
    overridden = resolve_model("openai:m@http://a/v1", base_url="http://b/v1", read_timeout=5)
    assert overridden.base_url == "http://b/v1"  # type: ignore[attr-defined]
    claude = resolve_model("anthropic:claude-haiku-4-5", api_key="k", cache_control=["system"])
    assert isinstance(claude, AnthropicModel)
    assert claude.model_id == "anthropic:claude-haiku-4-5"


_MISSING_EXTRA = textwrap.dedent(
    """
    import sys
    sys.modules["{sdk}"] = None  # as if the SDK were not installed
    from trio_agents.models import resolve_model
    try:
        resolve_model("{provider}:some-model", api_key="k")
    except ImportError as exc:
        print("ImportError:", exc)
    """
)


@pytest.mark.parametrize(("provider", "sdk"), [("openai", "openai"), ("anthropic", "anthropic")])
def test_missing_extra_raises_import_error_naming_it(provider: str, sdk: str) -> None:
    code = _MISSING_EXTRA.format(provider=provider, sdk=sdk)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out == (
        f"ImportError: the {provider!r} provider needs its SDK: "
        f"pip install 'trio-agents[{provider}]' (missing module: {sdk})\n"
    )  # said once, not once per layer


def test_importing_models_imports_no_sdk() -> None:
    code = (
        "import sys, trio_agents.models; "
        "print(sorted(m for m in ('openai', 'anthropic', 'httpx2', 'genai_prices', 'asyncio') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- forbid switch


def test_override_allow_model_requests_restores_the_previous_value() -> None:
    assert models.ALLOW_MODEL_REQUESTS is True
    with override_allow_model_requests(False):
        assert models.ALLOW_MODEL_REQUESTS is False
        with pytest.raises(ModelRequestsForbidden, match="'openai:x'"):
            check_model_requests_allowed("openai:x")
        with override_allow_model_requests(True):
            check_model_requests_allowed("openai:x")
        assert models.ALLOW_MODEL_REQUESTS is False
    assert models.ALLOW_MODEL_REQUESTS is True
    with (
        pytest.raises(InvalidArgumentError, match="allow"),
        override_allow_model_requests("no"),  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover


def test_environment_variable_starts_the_switch_off() -> None:
    code = "import trio_agents.models as m; print(m.ALLOW_MODEL_REQUESTS)"
    env = {"TRIO_AGENTS_ALLOW_MODEL_REQUESTS": "0", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------- prices


USAGE = Usage(
    input_tokens=1_000_000,
    output_tokens=500_000,
    cache_read_tokens=2_000_000,
    cache_write_tokens=100_000,
)


def test_model_price_cost_uses_each_rate() -> None:
    price = ModelPrice(input=1.0, output=4.0, cache_read=0.1, cache_write=1.25)
    cost = price.cost(USAGE)
    assert cost == Cost(input=1.0, output=2.0, cache_read=0.2, cache_write=0.125)
    assert cost.total == pytest.approx(3.325)
    # Without cache rates, cache tokens cost the input rate.
    assert ModelPrice(input=1.0, output=4.0).cost(USAGE).cache_read == 2.0


def test_price_table_lookup_exact_then_bare_name() -> None:
    table = PriceTable(
        {"openai:gpt-x": ModelPrice(input=1, output=2), "local-model": {"input": 0, "output": 0}}
    )
    assert table.lookup("openai:gpt-x") == ModelPrice(input=1, output=2)
    assert table.lookup("anthropic:local-model") == ModelPrice(input=0, output=0)
    assert table.lookup("openai:other") is None
    assert len(table) == 2
    assert sorted(table) == ["local-model", "openai:gpt-x"]


@pytest.mark.parametrize(
    "bad",
    [
        {"": {"input": 1, "output": 1}},
        {"m": {"input": -1, "output": 1}},
        {"m": {"input": 1}},
        {"m": {"input": 1, "output": 1, "cached": 2}},
        {"m": 3},
    ],
)
def test_price_table_rejects_bad_entries(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        PriceTable(bad)  # type: ignore[arg-type]


def test_cost_for_prefers_the_price_table() -> None:
    estimate = cost_for(
        "openai:gpt-4o-mini", USAGE, prices={"gpt-4o-mini": {"input": 1, "output": 1}}
    )
    assert estimate.known
    assert estimate.source == "price_table"
    assert estimate.cost.input == 1.0


def test_cost_for_uses_genai_prices() -> None:
    pytest.importorskip("genai_prices")
    usage = Usage(input_tokens=800, cache_read_tokens=200, output_tokens=500)
    estimate = cost_for("openai:gpt-4o-mini", usage)
    assert estimate == CostEstimate(cost=estimate.cost, known=True, source="genai-prices", note="")
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens.
    assert estimate.cost.input == pytest.approx(800 * 0.15e-6)
    assert estimate.cost.cache_read == pytest.approx(200 * 0.075e-6)
    assert estimate.cost.output == pytest.approx(500 * 0.6e-6)
    assert estimate.cost.total == pytest.approx(0.000435)


def test_unknown_model_costs_nothing_and_says_so() -> None:
    estimate = cost_for("openai:no-such-model-xyz", USAGE)
    assert estimate.cost == Cost()
    assert not estimate.known
    assert estimate.source == "unknown"
    assert "no-such-model-xyz" in estimate.note


def test_a_model_on_the_users_own_server_is_never_priced_as_the_providers() -> None:
    estimate = cost_for("openai:gpt-4o-mini@http://127.0.0.1:8080/v1", USAGE)
    assert not estimate.known
    assert estimate.cost == Cost()
    priced = cost_for(
        "openai:gpt-4o-mini@http://127.0.0.1:8080/v1",
        USAGE,
        prices={"gpt-4o-mini": {"input": 0, "output": 0}},
    )
    assert priced.known


def test_without_genai_prices_unknown_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # type: ignore[arg-type]
    estimate = cost_for("openai:gpt-4o-mini", USAGE)
    assert not estimate.known
    assert "trio-agents[prices]" in estimate.note


def test_cost_for_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="usage"):
        cost_for("openai:x", 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="model_id"):
        cost_for("", USAGE)
