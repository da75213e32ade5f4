"""Constraints over parameters (`fast < slow`, `fast * 2 <= slow and mode != 'b'`).

Parsed with `ast` into a whitelist of node types and evaluated by walking the tree:
no `eval`, no attribute access, no calls, no subscripts. A constraint names only
parameters of the space, checked when the study is set up, so a typo fails before
the first backtest rather than excluding every point silently.
"""

from __future__ import annotations

import ast
import operator as op
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetrader.errors import SpecError
from kubetrader.specs.common import did_you_mean

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: op.lt,
    ast.LtE: op.le,
    ast.Gt: op.gt,
    ast.GtE: op.ge,
    ast.Eq: op.eq,
    ast.NotEq: op.ne,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: op.add,
    ast.Sub: op.sub,
    ast.Mult: op.mul,
    ast.Div: op.truediv,
    ast.FloorDiv: op.floordiv,
    ast.Mod: op.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: op.neg, ast.UAdd: op.pos, ast.Not: op.not_}


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint; call it with a parameter mapping to test a point."""

    source: str
    tree: ast.Expression
    names: frozenset[str]

    def __call__(self, params: Mapping[str, Any]) -> bool:
        return bool(_evaluate(self.tree.body, params))


def parse_constraint(source: str, known: Sequence[str], *, field: str = "constraints") -> Constraint:
    """Parse `source`; SpecError naming the field for bad syntax, a forbidden construct
    or an unknown parameter name."""
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
    for name in sorted(names - set(known)):
        raise SpecError(field, f"{source!r}: unknown parameter {name!r}{did_you_mean(name, known)}")
    return Constraint(source=source, tree=tree, names=frozenset(names))


def parse_constraints(sources: Sequence[str], known: Sequence[str]) -> list[Constraint]:
    return [parse_constraint(s, known, field=f"constraints[{i}]") for i, s in enumerate(sources)]


def feasible(params: Mapping[str, Any], constraints: Sequence[Constraint]) -> bool:
    """True when every constraint holds for `params`."""
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


def _evaluate(node: ast.AST, params: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return params[node.id]
    if isinstance(node, ast.BoolOp):
        values = (_evaluate(v, params) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, params))
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, params), _evaluate(node.right, params))
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, params)
        for cmp, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, params)
            if not _COMPARE[type(cmp)](left, right):
                return False
            left = right
        return True
    raise TypeError(f"unexpected node {type(node).__name__}")  # unreachable after parse checks
