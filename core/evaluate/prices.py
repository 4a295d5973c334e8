"""What asking a model costs: a dated table of standard-tier inference prices, US dollars per
1M tokens (input, output), for base models and for models fine-tuned from them.

A copy of the provider's pricing page on `PRICES_DATE`, not a live lookup. A dated snapshot
(`gpt-4o-mini-2024-07-18`) is priced as its family (`gpt-4o-mini`) by the longest matching
prefix; a fine-tuned model (`ft:<base>:<org>:<suffix>:<id>`, or a checkpoint of one,
`...:ckpt-step-N`) at its base's fine-tuned price. The local backend bills nothing.
"""

from __future__ import annotations

PRICES_DATE = "2026-11-26"

BASE_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o4-mini": (1.10, 4.40),
    "gpt-3.5-turbo-0125": (0.50, 1.50),
}
"""Base models, by family or snapshot name."""

BASE_ALIASES = {"gpt-3.5-turbo": "gpt-3.5-turbo-0125"}
"""Names that stand for one snapshot only (gpt-3.5-turbo's older snapshots cost more)."""

FINE_TUNED_PRICES: dict[str, tuple[float, float]] = {
    "o4-mini-2025-04-16": (4.00, 16.00),
    "gpt-4.1-2025-04-14": (3.00, 12.00),
    "gpt-4.1-mini-2025-04-14": (0.80, 3.20),
    "gpt-4.1-nano-2025-04-14": (0.20, 0.80),
    "gpt-4o-2024-08-06": (3.75, 15.00),
    "gpt-4o-mini-2024-07-18": (0.30, 1.20),
    "gpt-3.5-turbo": (3.00, 6.00),
    "davinci-002": (12.00, 12.00),
    "babbage-002": (1.60, 1.60),
}
"""Models fine-tuned from these bases (a family name matches its snapshots too)."""


def inference_price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for `model`, or None when the table has no price."""
    name = model.strip().lower()
    if name.startswith("ft:"):
        base = name.split(":")[1]
        return _longest_prefix(FINE_TUNED_PRICES, base) if base else None
    return _longest_prefix(BASE_PRICES, BASE_ALIASES.get(name, name))


def _longest_prefix(table: dict[str, tuple[float, float]], name: str) -> tuple[float, float] | None:
    """The price of the longest key that is `name` or a prefix of it followed by '-'
    (`gpt-4o-mini-2024-07-18` is gpt-4o-mini, never gpt-4o)."""
    matches = [key for key in table if name == key or name.startswith(key + "-")]
    return table[max(matches, key=len)] if matches else None


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int, *, local: bool) -> float | None:
    """What the tokens cost: 0.0 on the local backend, None for a model with no price."""
    if local:
        return 0.0
    price = inference_price(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
