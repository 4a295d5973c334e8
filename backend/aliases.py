"""Other names for the base models this backend serves, so code written for OpenAI runs
unchanged: `gpt-4o-mini-2024-07-18` can name `Qwen/Qwen2.5-0.5B-Instruct` (or the built-in
model) for fine-tuning and for chat.

An alias is resolved where a request names a model: a job created on an alias trains the
model it names (the job says which, in its `model` and in an event), a chat or a response
asked of an alias is answered by that model (the body still names the alias asked for), and
`GET /v1/models` lists each alias with what it stands for. An alias names a base model,
never another alias or a fine-tuned model, and never hides a model of that name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

MAX_ALIASES = 256
MAX_NAME_CHARS = 256


class AliasError(ValueError):
    """An alias table that cannot be used (the message names the alias)."""


class ModelAliases:
    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        table = dict(aliases or {})
        if len(table) > MAX_ALIASES:
            raise AliasError(f"{len(table)} model aliases: at most {MAX_ALIASES}")
        for alias, model in table.items():
            for what, name in (("alias", alias), ("model", model)):
                if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
                    raise AliasError(f"model alias {str(alias)[:60]!r}: the {what} must be a model name, not {str(name)[:60]!r}")
            if model in table:
                raise AliasError(f"model alias {alias!r} names {model!r}, itself an alias: name a served model")
            if model.startswith("ft:"):
                raise AliasError(f"model alias {alias!r} names a fine-tuned model: aliases stand for base models")
        self._table = table

    def resolve(self, name: str) -> str:
        """The model `name` stands for (itself when it is no alias)."""
        return self._table.get(name, name)

    def target(self, name: str) -> str | None:
        """What the alias `name` stands for; None when it is no alias."""
        return self._table.get(name)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._table.items())
