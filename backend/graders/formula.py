"""The `multi` grader's `calculate_output`: a safe arithmetic formula over sub-grader keys.

Parsed with `ast` and evaluated by walking the tree, never with `eval`: numbers, the
variable names given, `+ - * / **` (and unary `+ -`), parentheses, and the functions
min, max, abs, round, sqrt, log, exp. Anything else is a `FormulaError`, which graders
report as `formula_parse_error`. Arithmetic runs on floats, so `9 ** 9 ** 9` overflows
at once (an error) instead of building a huge integer.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from typing import Callable, Mapping

MAX_FORMULA_CHARS = 1000
MAX_DEPTH = 50

BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
UNARY: dict[type, Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": lambda x, digits=0: round(x, int(digits)),
    "sqrt": math.sqrt,
    "log": math.log,
    "exp": math.exp,
}
ARITY = {"min": (1, 64), "max": (1, 64), "abs": (1, 1), "round": (1, 2), "sqrt": (1, 1), "log": (1, 2), "exp": (1, 1)}


class FormulaError(Exception):
    """The formula is not one we evaluate, or evaluating it failed (division by zero...)."""


@dataclass(frozen=True, slots=True)
class Formula:
    source: str
    tree: ast.expr
    names: frozenset[str]

    def evaluate(self, values: Mapping[str, float]) -> float:
        try:
            result = _evaluate(self.tree, values)
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise FormulaError(f"could not evaluate {self.source!r}: {exc}") from None
        if isinstance(result, complex) or not math.isfinite(result):
            raise FormulaError(f"{self.source!r} did not give a finite number")
        return float(result)


def parse_formula(source: object) -> Formula:
    if not isinstance(source, str) or not source.strip():
        raise FormulaError("the formula must be a non-empty string")
    if len(source) > MAX_FORMULA_CHARS:
        raise FormulaError(f"the formula is longer than {MAX_FORMULA_CHARS} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise FormulaError(f"{source[:80]!r} is not an arithmetic formula") from None
    names: set[str] = set()
    _check(tree, names, 0)
    return Formula(source, tree, frozenset(names))


def _check(node: ast.AST, names: set[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FormulaError("the formula is nested too deeply")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise FormulaError(f"only numbers may appear as constants, not {node.value!r}"[:120])
        try:
            finite = math.isfinite(float(node.value))
        except OverflowError:
            finite = False
        if not finite:
            raise FormulaError("a number in the formula is too large")
    elif isinstance(node, ast.Name):
        names.add(node.id)
    elif isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        _check(node.left, names, depth + 1)
        _check(node.right, names, depth + 1)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        _check(node.operand, names, depth + 1)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        low, high = ARITY[node.func.id]
        if node.keywords or not low <= len(node.args) <= high:
            raise FormulaError(f"{node.func.id}() takes {low} to {high} plain arguments")
        for argument in node.args:
            _check(argument, names, depth + 1)
    else:
        allowed = f"numbers, names, + - * / ** and {', '.join(FUNCTIONS)}"
        raise FormulaError(f"{ast.unparse(node)[:60]!r} is not allowed (only {allowed})")


def _evaluate(node: ast.expr, values: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise FormulaError(f"unknown name {node.id!r}")
        return float(values[node.id])
    if isinstance(node, ast.BinOp):
        return BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return UNARY[type(node.op)](_evaluate(node.operand, values))
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return FUNCTIONS[node.func.id](*(_evaluate(argument, values) for argument in node.args))
