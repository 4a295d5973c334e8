"""A function-calling dataset shaped like the cookbook's: a smart-home assistant with a few
functions, a system prompt, the tools offered in every row, answers that call one function
(or two at once), small talk answered in words, and the turn after a tool's result.

Training and held-out rows use different sentence templates (`phrasing="held_out"`), so a
model that answers the held-out ones learned which words call which function, not the
sentences themselves. Argument values come from fixed lists both sides share."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SYSTEM = "You are a home assistant. Call a function when the user asks for something you can do."
ROOMS = ["kitchen", "bedroom", "garage", "office", "hallway", "bathroom"]
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Denver"]
LEVELS = [10, 25, 50, 75, 100]


def _tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


TOOLS = [
    _tool("get_weather", "The weather in a city", {"city": {"type": "string"}}),
    _tool("set_lights", "Dim or brighten a room's lights", {"room": {"type": "string"}, "level": {"type": "integer"}}),
    _tool("lock_door", "Lock the door of a room", {"room": {"type": "string"}}),
]

PHRASINGS: dict[str, dict[str, list[str]]] = {
    "train": {
        "get_weather": ["What's the weather in {city}?", "Tell me the weather for {city}.",
                        "How is the weather in {city} today?", "Weather report for {city}, please."],
        "set_lights": ["Set the {room} lights to {level} percent.", "Lights in the {room} at {level} percent please.",
                       "Can you put the {room} lights on {level} percent?", "Change the {room} lights to {level} percent."],
        "lock_door": ["Lock the {room} door.", "Please lock the door of the {room}.",
                      "Can you lock the {room} door for me?", "Make sure the {room} door is locked."],
        "chat": ["Hello there!", "Thanks a lot!", "Good morning!", "You are great, thank you."],
    },
    "held_out": {
        "get_weather": ["Could you check the weather over in {city}", "{city} weather?"],
        "set_lights": ["I want the lights of the {room} on {level} percent", "{room} lights, {level} percent"],
        "lock_door": ["Is it possible to lock the door to the {room}", "{room} door: lock it"],
        "chat": ["Hello!", "Thank you so much!"],
    },
}  # fmt: skip
CHAT_REPLY = "You're welcome! Ask me about the weather, the lights or the doors."


def arguments(function: str, rng: random.Random) -> dict[str, Any]:
    if function == "get_weather":
        return {"city": rng.choice(CITIES)}
    if function == "set_lights":
        return {"room": rng.choice(ROOMS), "level": rng.choice(LEVELS)}
    return {"room": rng.choice(ROOMS)}


def example(rng: random.Random, phrasing: str = "train") -> tuple[list[dict[str, Any]], str | None, dict | None]:
    """(messages up to the answer, the function that should be called or None, its arguments)."""
    function = rng.choice(["get_weather", "set_lights", "lock_door", "chat"])
    template = rng.choice(PHRASINGS[phrasing][function])
    if function == "chat":
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": template}], None, None
    args = arguments(function, rng)
    prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": template.format(**args)}]
    return prompt, function, args


def row(rng: random.Random, index: int) -> dict[str, Any]:
    prompt, function, args = example(rng)
    if function is None:
        return {"messages": [*prompt, {"role": "assistant", "content": CHAT_REPLY}], "tools": TOOLS}
    call = {"id": f"call_{index}", "type": "function", "function": {"name": function, "arguments": json.dumps(args)}}
    messages = [*prompt, {"role": "assistant", "tool_calls": [call]}]
    if index % 4 == 0:  # the turn after the tool's result: a sentence, no call
        messages += [{"role": "tool", "tool_call_id": call["id"], "content": "done"}, {"role": "assistant", "content": "Done."}]
    return {"messages": messages, "tools": TOOLS, "parallel_tool_calls": False}


def write_tool_dataset(path: Path, n: int, seed: int = 5) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps(row(rng, i)) + "\n" for i in range(n)), encoding="utf-8")
    return path


def held_out(n: int, seed: int = 99) -> list[tuple[list[dict[str, Any]], str | None, dict | None]]:
    rng = random.Random(seed)
    return [example(rng, "held_out") for _ in range(n)]


# -- structured answers: one JSON object per answer ---------------------------------------------

ITEMS = ["apples", "pears", "lemons", "plums"]
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"item": {"type": "string"}, "quantity": {"type": "integer"}, "city": {"type": "string"}},
    "required": ["item", "quantity", "city"],
    "additionalProperties": False,
}
ORDER_PHRASINGS = {
    "train": ["Send {quantity} {item} to {city}.", "I need {quantity} {item} delivered in {city}.",
              "Order {quantity} {item} for our shop in {city}.", "{city} wants {quantity} {item}."],
    "held_out": ["Could {city} get {quantity} {item} please", "{quantity} {item}, {city}"],
}  # fmt: skip
ORDER_SYSTEM = "Read the order and answer with its JSON."


def order(rng: random.Random, phrasing: str = "train") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    wanted = {"item": rng.choice(ITEMS), "quantity": rng.choice(LEVELS), "city": rng.choice(CITIES)}
    text = rng.choice(ORDER_PHRASINGS[phrasing]).format(**wanted)
    return [{"role": "system", "content": ORDER_SYSTEM}, {"role": "user", "content": text}], wanted


def write_order_dataset(path: Path, n: int, seed: int = 6) -> Path:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt, wanted = order(rng)
        rows.append({"messages": [*prompt, {"role": "assistant", "content": json.dumps(wanted)}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
