"""Issue 22 item 8: a constraint that cannot be evaluated is bad input (exit 2, naming it), and a
constraint cannot allocate (string repetition was allowed: `'a' * 50000000000`, 50 GB).

The parser keeps its whitelist of node types; on top, arithmetic takes numbers only, constants
are numbers and strings, and with the space's types known a number is never ordered against a
string nor divided by a literal zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetrader.cli.main import main
from kubetrader.errors import SpecError
from kubetrader.optimize.constraints import parse_constraint
from kubetrader.optimize.space import parse_space

SPACE = parse_space(
    {
        "fast": {"type": "int", "low": 5, "high": 20},
        "slow": {"type": "int", "low": 20, "high": 60, "step": 5},
        "mode": {"type": "categorical", "choices": ["a", "b"]},
    }
)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("'a' * 50000000000 == 'b'", "'*' takes numbers, and 'a' is a string"),
        ("mode * slow == 'aa'", "'*' takes numbers, and mode may be a string"),
        ("'a' + mode == 'ab'", "'+' takes numbers, and 'a' is a string"),
        ("-mode < 1", "'-' takes a number, and mode may be a string"),
        ("b'a' * 50000000000 == 1", "the constant b'a' is not allowed"),
        ("fast < 'x'", "fast and 'x' cannot be ordered (a number and a string)"),
        ("fast / 0 < slow", "division by zero in fast / 0"),
        ("fast % 0 == 1", "division by zero in fast % 0"),
        ("fast ** 99999999 > 1", "Pow is not allowed"),
    ],
)
def test_constraints_that_would_allocate_or_cannot_be_evaluated_are_refused_when_parsed(
    source: str, message: str
) -> None:
    with pytest.raises(SpecError, match="constraints") as refused:
        parse_constraint(source, SPACE)
    assert message in str(refused.value)


def test_an_error_only_a_point_reveals_names_the_constraint_and_the_point() -> None:
    constraint = parse_constraint("fast / (slow - 20) < 1", SPACE, field="constraints[1]")
    assert constraint({"fast": 5, "slow": 25, "mode": "a"}) is False
    with pytest.raises(SpecError) as refused:
        constraint({"fast": 5, "slow": 20, "mode": "a"})
    assert str(refused.value) == (
        "constraints[1]: 'fast / (slow - 20) < 1' cannot be evaluated at fast=5, slow=20: division by zero"
    )


def test_without_the_spaces_types_the_evaluation_still_refuses_string_arithmetic() -> None:
    """Callers with names only (no types) get the check at evaluation, before any repetition."""
    constraint = parse_constraint("mode * 50000000000 == 'a'", ["mode"])
    with pytest.raises(SpecError, match="mode is the string 'a', and arithmetic takes numbers"):
        constraint({"mode": "a"})
    ordering = parse_constraint("fast < 'x'", ["fast"])
    with pytest.raises(SpecError, match="'<' not supported between instances of 'int' and 'str'"):
        ordering({"fast": 1})


def test_equality_across_types_strings_and_booleans_still_work() -> None:
    constraint = parse_constraint("mode == 'a' and fast * 2 < slow or not mode != 'b'", SPACE)
    assert constraint({"fast": 5, "slow": 20, "mode": "a"})
    assert not constraint({"fast": 15, "slow": 20, "mode": "a"})
    assert constraint({"fast": 15, "slow": 20, "mode": "b"})
    assert parse_constraint("fast != 'x'", SPACE)({"fast": 5})


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        ("fast < 'x'", "constraints[0]: \"fast < 'x'\": fast and 'x' cannot be ordered"),
        ("fast / 0 < slow", "constraints[0]: 'fast / 0 < slow': division by zero in fast / 0"),
        ("fast / (slow - slow) < 1", "constraints[0]: 'fast / (slow - slow) < 1' cannot be evaluated at fast="),
    ],
)
def test_the_cli_exits_2_naming_the_constraint_not_with_a_traceback(
    constraint: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(tmp_path / "data"))
    space = tmp_path / "space.json"
    space.write_text(
        json.dumps({"fast": {"type": "int", "low": 5, "high": 20}, "slow": {"type": "int", "low": 20, "high": 60}})
    )
    argv = ["optimize", "--strategy", "strategies.sma_crossover.SMACrossover", "--param-space", str(space),
            "--symbols", "ORCL", "--start", "2012-01-01", "--end", "2013-12-31", "--n-trials", "2",
            "--study-name", "bad-constraint", "--constraint", constraint,
            "--output", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert message in err
    assert "Traceback" not in err
