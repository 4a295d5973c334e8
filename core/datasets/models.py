"""What the validator needs to know about base models: tokenizer, context limit, price.

Figures are OpenAI's published ones (tokenizers, context windows, which models each method
fine-tunes); the price table is a dated copy of OpenAI's pricing page, not a live lookup.
A fine-tuned model (`ft:BASE:org::id`) is treated as its base. Unknown models get
o200k_base, a 65,536 token context and no price, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from .jobrules import auto_epochs  # noqa: F401  (the one "auto" epochs, the local backend's; named here for callers)

PRICE_TABLE_DATE = "2026-11-22"
PRICE_TABLE_SOURCE = "OpenAI pricing page copy, standard tier (compiled 2026-11-22)"

O200K, CL100K = "o200k_base", "cl100k_base"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    encoding: str
    context: int  # tokens per training example; longer ones are truncated from the end
    usd_per_1m_training_tokens: float | None  # None: not billed by tokens, or unknown
    methods: tuple[str, ...]  # the formats this model can be fine-tuned on
    note: str = ""
    known: bool = True


_SFT_DPO = ("sft", "dpo")
MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("gpt-4.1-2025-04-14", O200K, 65_536, 25.00, _SFT_DPO, "context unconfirmed (likely 65,536)"),
        ModelInfo("gpt-4.1-mini-2025-04-14", O200K, 65_536, 5.00, _SFT_DPO, "context unconfirmed (likely 65,536)"),
        ModelInfo("gpt-4.1-nano-2025-04-14", O200K, 65_536, 1.50, _SFT_DPO, "context unconfirmed (likely 65,536)"),
        ModelInfo("gpt-4o-2024-08-06", O200K, 65_536, 25.00, _SFT_DPO),
        ModelInfo("gpt-4o-mini-2024-07-18", O200K, 65_536, 3.00, _SFT_DPO),
        ModelInfo("gpt-3.5-turbo-0125", CL100K, 16_385, 8.00, ("sft",)),
        ModelInfo("gpt-3.5-turbo-1106", CL100K, 16_385, 8.00, ("sft",)),
        ModelInfo("gpt-3.5-turbo-0613", CL100K, 4_096, 8.00, ("sft",)),
        ModelInfo("gpt-4-0613", CL100K, 8_192, None, ("sft",), "historical; no current training price"),
        ModelInfo(
            "o4-mini-2025-04-16", O200K, 65_536, None, ("rft",),
            "RFT is billed per hour of training ($100/h), not per token",
        ),
        ModelInfo("davinci-002", CL100K, 16_384, 6.00, ("legacy",)),
        ModelInfo("babbage-002", CL100K, 16_384, 0.40, ("legacy",)),
    )
}

ALIASES = {
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "o4-mini": "o4-mini-2025-04-16",
}

#: The model assumed for each format when none is given.
DEFAULT_MODELS = {
    "sft": "gpt-4.1-mini-2025-04-14",
    "dpo": "gpt-4.1-mini-2025-04-14",
    "rft": "o4-mini-2025-04-16",
    "legacy": "babbage-002",
}

_CL100K_PREFIXES = ("gpt-3.5", "gpt-35", "gpt-4", "davinci", "babbage")
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def base_model(name: str) -> str:
    """`ft:gpt-4o-mini-2024-07-18:org:suffix:id` -> `gpt-4o-mini-2024-07-18`."""
    name = name.strip()
    if name.startswith("ft:"):
        parts = name.split(":")
        if len(parts) > 1 and parts[1]:
            return parts[1]
    return name


def model_info(name: str) -> ModelInfo:
    """Everything known about `name` (a snapshot, an alias or an `ft:` model)."""
    base = base_model(name)
    key = ALIASES.get(base.lower(), base.lower())
    if key in MODELS:
        return MODELS[key]
    for known in MODELS.values():  # e.g. "gpt-4o-mini-2024-07-18-custom" from a compatible server
        if key.startswith(known.name):
            return known
    if key.startswith(_O200K_PREFIXES):
        encoding = O200K
    elif key.startswith(_CL100K_PREFIXES):
        encoding = CL100K
    else:
        encoding = O200K
    return ModelInfo(name, encoding, 65_536, None, ("sft", "dpo", "rft"), "unknown model", known=False)


def models_for(method: str) -> list[str]:
    """The listed base models of a method (sft, dpo, rft, legacy)."""
    return [name for name, m in MODELS.items() if method in m.methods]


def default_model(fmt: str | None) -> str:
    return DEFAULT_MODELS.get(fmt or "sft", DEFAULT_MODELS["sft"])
