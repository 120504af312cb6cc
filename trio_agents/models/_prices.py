"""Cost from usage: a user price table first, then ``genai-prices`` (extra ``prices``).

Rules:

* :func:`cost_for` looks the model up in the given :class:`PriceTable` (exact id first, then the
  name without the ``provider:`` prefix), then, when ``genai-prices`` is installed, in its
  bundled price snapshot (no network: its auto-update is never started).
* A model id with a ``@URL`` (a server of the user's own) is looked up in the table only.
* A model neither knows costs nothing, and says so: :attr:`CostEstimate.known` is ``False``
  and :attr:`CostEstimate.note` tells why. It never guesses from a similar model.
* Prices are US dollars per million tokens. :attr:`~trio_agents.Usage.input_tokens` excludes
  cache reads and writes, which are priced at their own rates (a table entry without a cache
  rate charges cache tokens at the input rate).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from .._errors import InvalidArgumentError
from .._messages import Cost, Usage

_MILLION = 1_000_000


def _rate(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidArgumentError(f"a price must be a number >= 0 or None, got {value!r}")
    return float(value)


def _required_rate(value: float) -> float:
    rate = _rate(value)
    if rate is None:
        raise InvalidArgumentError("input and output prices are required")
    return rate


@attrs.frozen(kw_only=True)
class ModelPrice:
    """One model's prices, in US dollars per million tokens."""

    input: float = attrs.field(converter=_required_rate)
    """Price of a million input tokens."""
    output: float = attrs.field(converter=_required_rate)
    """Price of a million output tokens."""
    cache_read: float | None = attrs.field(default=None, converter=_rate)
    """Price of a million cache-read tokens (``None``: the input price)."""
    cache_write: float | None = attrs.field(default=None, converter=_rate)
    """Price of a million cache-write tokens (``None``: the input price)."""

    def cost(self, usage: Usage) -> Cost:
        """What ``usage`` costs at these prices."""
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        return Cost(
            input=usage.input_tokens * self.input / _MILLION,
            output=usage.output_tokens * self.output / _MILLION,
            cache_read=usage.cache_read_tokens * read / _MILLION,
            cache_write=usage.cache_write_tokens * write / _MILLION,
        )


class PriceTable(Mapping[str, ModelPrice]):
    """Prices by model id, given by the user; a read-only mapping.

    :param prices: model id (``"openai:gpt-4o-mini"``, or a bare name such as
        ``"gpt-4o-mini"`` matching any provider) to :class:`ModelPrice`, or to a mapping of
        its fields (``{"input": 0.15, "output": 0.6}``).
    :raises InvalidArgumentError: a key is not a non-empty str or a price is malformed.
    """

    __slots__ = ("_prices",)

    def __init__(
        self, prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None
    ) -> None:
        table: dict[str, ModelPrice] = {}
        for key, value in dict(prices or {}).items():
            if not isinstance(key, str) or not key:
                raise InvalidArgumentError(f"price table keys must be model ids, got {key!r}")
            if isinstance(value, ModelPrice):
                table[key] = value
            elif isinstance(value, Mapping):
                try:
                    table[key] = ModelPrice(**value)
                except TypeError as exc:
                    raise InvalidArgumentError(
                        f"prices[{key!r}]: {exc}; fields are input, output, cache_read, cache_write"
                    ) from None
            else:
                raise InvalidArgumentError(
                    f"prices[{key!r}] must be a ModelPrice or a mapping, got {type(value).__name__}"
                )
        self._prices = table

    def __getitem__(self, key: str) -> ModelPrice:
        return self._prices[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def lookup(self, model_id: str) -> ModelPrice | None:
        """The price of ``model_id``: its exact entry, else the entry of its bare name."""
        found = self._prices.get(model_id)
        if found is None and ":" in model_id:
            found = self._prices.get(model_id.partition(":")[2])
        return found

    def __repr__(self) -> str:
        return f"PriceTable({self._prices!r})"


@attrs.frozen(kw_only=True)
class CostEstimate:
    """What :func:`cost_for` found."""

    cost: Cost
    """The cost (all zero when the model's prices are unknown)."""
    known: bool
    """Whether the model's prices were found."""
    source: str
    """Where the prices came from: ``"price_table"``, ``"genai-prices"`` or ``"unknown"``."""
    note: str = ""
    """Why the cost is unknown (empty when it is known)."""


def _genai_prices() -> Any | None:
    try:
        return importlib.import_module("genai_prices")
    except ImportError:
        return None


def _genai_cost(gp: Any, provider: str | None, name: str, usage: Usage) -> Cost | None:
    def calc(**counts: int) -> Any:
        return gp.calc_price(gp.Usage(**counts), name, provider_id=provider)

    # genai-prices counts cached tokens inside input_tokens; ours does not.
    all_input = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    try:
        full = calc(
            input_tokens=all_input,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )
        read = (
            float(
                calc(
                    input_tokens=usage.cache_read_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                ).input_price
            )
            if usage.cache_read_tokens
            else 0.0
        )
        write = (
            float(
                calc(
                    input_tokens=usage.cache_write_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                ).input_price
            )
            if usage.cache_write_tokens
            else 0.0
        )
    except LookupError:
        return None
    return Cost(
        input=max(float(full.input_price) - read - write, 0.0),
        output=float(full.output_price),
        cache_read=read,
        cache_write=write,
    )


def cost_for(
    model_id: str,
    usage: Usage,
    *,
    prices: PriceTable | Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
    use_genai_prices: bool = True,
) -> CostEstimate:
    """The cost of ``usage`` on ``model_id`` (see the module rules for the lookup order).

    :param model_id: ``"provider:model"`` or a bare model name; a ``@URL`` suffix is ignored.
    :param usage: the tokens to price (e.g. :attr:`AgentResult.usage
        <trio_agents.AgentResult.usage>`).
    :param prices: the user's prices, consulted first.
    :param use_genai_prices: also look in ``genai-prices`` when it is installed.
    """
    if not isinstance(usage, Usage):
        raise InvalidArgumentError(f"usage must be a Usage, got {type(usage).__name__}")
    if not isinstance(model_id, str) or not model_id:
        raise InvalidArgumentError(f"model_id must be a non-empty str, got {model_id!r}")
    table = prices if isinstance(prices, PriceTable) or prices is None else PriceTable(prices)
    bare = model_id
    for scheme in ("@http://", "@https://"):
        bare = bare.partition(scheme)[0]
    # A model on a server of the user's own is not the provider's: never price it as one.
    own_server = bare != model_id
    if table is not None:
        entry = table.lookup(bare)
        if entry is not None:
            return CostEstimate(cost=entry.cost(usage), known=True, source="price_table")
    provider, sep, name = bare.partition(":")
    if not sep:
        provider, name = "", bare
    if use_genai_prices and not own_server:
        gp = _genai_prices()
        if gp is None:
            return CostEstimate(
                cost=Cost(),
                known=False,
                source="unknown",
                note=f"no price for {model_id!r} in the price table, and genai-prices is not "
                "installed (pip install 'trio-agents[prices]')",
            )
        cost = _genai_cost(gp, provider or None, name, usage)
        if cost is not None:
            return CostEstimate(cost=cost, known=True, source="genai-prices")
    return CostEstimate(
        cost=Cost(),
        known=False,
        source="unknown",
        note=f"no price for {model_id!r} in the price table"
        + (" or in genai-prices" if use_genai_prices and not own_server else "")
        + "; its cost is counted as zero",
    )
