"""Constraints over parameters (`fast < slow`, `fast * 2 <= slow and mode != 'b'`).

Parsed with `ast` into a whitelist of node types and evaluated by walking the tree:
no `eval`, no attribute access, no calls, no subscripts. A constraint names only
parameters of the space, checked when the study is set up, so a typo fails before
the first backtest rather than excluding every point silently.

Nothing a constraint does may allocate more than a few numbers: arithmetic takes
numbers only (`'a' * 900000000` and `mode * slow` would build a string of any size),
constants are numbers, booleans or strings (no bytes), and there is no `**`. With the
parameters' types known (the space), a constraint that cannot be evaluated (`fast <
'x'`, `fast / 0`) is refused when it is parsed; what only a point can reveal (`fast /
(slow - 20)` at slow = 20) is a SpecError naming the constraint and the point, raised
where the point is tested (exit 2, a Failed status), never a traceback.
"""

from __future__ import annotations

import ast
import operator as op
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubetrader.errors import SpecError
from kubetrader.specs.common import did_you_mean
from kubetrader.specs.study import CategoricalParam, ParamDef

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: op.lt,
    ast.LtE: op.le,
    ast.Gt: op.gt,
    ast.GtE: op.ge,
    ast.Eq: op.eq,
    ast.NotEq: op.ne,
}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: op.add,
    ast.Sub: op.sub,
    ast.Mult: op.mul,
    ast.Div: op.truediv,
    ast.FloorDiv: op.floordiv,
    ast.Mod: op.mod,
}
_DIVISION = (ast.Div, ast.FloorDiv, ast.Mod)
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: op.neg, ast.UAdd: op.pos, ast.Not: op.not_}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
           ast.USub: "-", ast.UAdd: "+"}  # fmt: skip

Kind = Literal["number", "string"]
_NUMBER: frozenset[Kind] = frozenset({"number"})


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint; call it with a parameter mapping to test a point."""

    source: str
    tree: ast.Expression
    names: frozenset[str]
    field: str = "constraints"

    def __call__(self, params: Mapping[str, Any]) -> bool:
        try:
            return bool(_evaluate(self.tree.body, params))
        except (ArithmeticError, TypeError, ValueError) as exc:
            point = ", ".join(f"{k}={params[k]!r}" for k in sorted(self.names) if k in params)
            raise SpecError(self.field, f"{self.source!r} cannot be evaluated at {point}: {exc}") from None


def parse_constraint(
    source: str, known: Sequence[str] | Mapping[str, ParamDef], *, field: str = "constraints"
) -> Constraint:
    """Parse `source`; SpecError naming the field for bad syntax, a forbidden construct, an unknown
    parameter name or, when `known` is the space (names to definitions), an operation its types refuse."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpecError(field, f"cannot parse {source!r}: {exc.msg}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif not isinstance(node, _ALLOWED_NODES):
            raise SpecError(field, f"{source!r}: {type(node).__name__} is not allowed in a constraint")
        elif isinstance(node, ast.Constant) and not isinstance(node.value, bool | int | float | str):
            raise SpecError(field, f"{source!r}: the constant {node.value!r} is not allowed (numbers and strings only)")
    for name in sorted(names - set(known)):
        raise SpecError(field, f"{source!r}: unknown parameter {name!r}{did_you_mean(name, list(known))}")
    kinds = _param_kinds(known)
    problem = _type_problem(tree.body, kinds)
    if problem:
        raise SpecError(field, f"{source!r}: {problem}")
    return Constraint(source=source, tree=tree, names=frozenset(names), field=field)


def parse_constraints(sources: Sequence[str], known: Sequence[str] | Mapping[str, ParamDef]) -> list[Constraint]:
    return [parse_constraint(s, known, field=f"constraints[{i}]") for i, s in enumerate(sources)]


def feasible(params: Mapping[str, Any], constraints: Sequence[Constraint]) -> bool:
    """True when every constraint holds for `params` (SpecError when one cannot be evaluated there)."""
    return all(c(params) for c in constraints)


_ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Compare,
    ast.BinOp,
    ast.UnaryOp,
    ast.Name,
    ast.Load,
    ast.Constant,
    *_COMPARE,
    *_BINARY,
    *_UNARY,
)


def _kind_of(value: Any) -> Kind:
    return "string" if isinstance(value, str) else "number"


def _param_kinds(known: Sequence[str] | Mapping[str, ParamDef]) -> dict[str, frozenset[Kind]]:
    """What each parameter can hold: numbers, strings or both (a categorical of mixed choices)."""
    if not isinstance(known, Mapping):
        return {}  # names only: types are unknown, and checked at evaluation
    return {
        name: frozenset(_kind_of(c) for c in d.choices) if isinstance(d, CategoricalParam) else _NUMBER
        for name, d in known.items()
    }


def _kinds(node: ast.AST, params: Mapping[str, frozenset[Kind]]) -> frozenset[Kind]:
    if isinstance(node, ast.Constant):
        return frozenset({_kind_of(node.value)})
    if isinstance(node, ast.Name):
        return params.get(node.id, frozenset())  # unknown: checked at evaluation
    return _NUMBER  # arithmetic gives numbers (strings are refused there), comparisons and logic booleans


def _type_problem(node: ast.AST, params: Mapping[str, frozenset[Kind]]) -> str | None:
    """The first operation whose operands' types could make it fail or allocate, or None."""
    for child in ast.iter_child_nodes(node):
        problem = _type_problem(child, params)
        if problem:
            return problem
    if isinstance(node, ast.BinOp):
        for side in (node.left, node.right):
            if "string" in _kinds(side, params):
                verb = "is" if isinstance(side, ast.Constant) else "may be"
                return f"'{_SYMBOL[type(node.op)]}' takes numbers, and {ast.unparse(side)} {verb} a string"
        if isinstance(node.op, _DIVISION) and isinstance(node.right, ast.Constant) and node.right.value == 0:
            return f"division by zero in {ast.unparse(node)}"
    elif isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not):
        if "string" in _kinds(node.operand, params):
            return f"'{_SYMBOL[type(node.op)]}' takes a number, and {ast.unparse(node.operand)} may be a string"
    elif isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for cmp, left, right in zip(node.ops, operands, operands[1:], strict=False):
            if not isinstance(cmp, _ORDERING):
                continue
            kinds = _kinds(left, params) | _kinds(right, params)
            if len(kinds) > 1:
                return f"{ast.unparse(left)} and {ast.unparse(right)} cannot be ordered (a number and a string)"
    return None


def _number(value: Any, node: ast.AST) -> Any:
    """Arithmetic operands are numbers only: string repetition would allocate without bound."""
    if isinstance(value, str):
        raise TypeError(f"{ast.unparse(node)} is the string {value!r}, and arithmetic takes numbers")
    return value


def _evaluate(node: ast.AST, params: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return params[node.id]
    if isinstance(node, ast.BoolOp):
        values = (_evaluate(v, params) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, params)
        if not isinstance(node.op, ast.Not):
            operand = _number(operand, node.operand)
        return _UNARY[type(node.op)](operand)
    if isinstance(node, ast.BinOp):
        left = _number(_evaluate(node.left, params), node.left)
        right = _number(_evaluate(node.right, params), node.right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, params)
        for cmp, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, params)
            if not _COMPARE[type(cmp)](left, right):
                return False
            left = right
        return True
    raise TypeError(f"unexpected node {type(node).__name__}")  # unreachable after parse checks
