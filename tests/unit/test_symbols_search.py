"""`kubetrader symbols search` against a local server shaped like Finnhub (issue 24); no internet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetrader.errors import InfrastructureError, SpecError
from kubetrader.symbols import FinnhubSymbols, finnhub_key
from tests.helpers import cli_in_process, free_port
from tests.unit.finnhub_double import KEY, FinnhubDouble

_run = cli_in_process


def test_search_shows_symbol_description_type_exchange_currency_and_figi(
    finnhub: FinnhubDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "symbols", "search", "apple", "--json")
    assert code == 0, err
    assert json.loads(out)[0] == {
        "symbol": "AAPL",
        "description": "APPLE INC",
        "type": "Common Stock",
        "exchange": "XNAS",
        "currency": "USD",
        "figi": "BBG000B9XRY4",
    }
    assert ("/search", {"q": "apple", "exchange": "US"}) in finnhub.requests
    code, out, _ = _run(capsys, "symbols", "search", "apple", "--type", "Common Stock")
    assert code == 0
    row = next(line for line in out.splitlines() if "AAPL" in line)
    for cell in ("AAPL", "APPLE INC", "Common Stock", "XNAS", "USD", "BBG000B9XRY4"):
        assert cell in row
    assert "APLE" not in out and "AAPU" not in out


def test_answers_are_cached_so_a_second_search_asks_nothing(
    finnhub: FinnhubDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "symbols", "search", "apple")[0] == 0
    asked = len(finnhub.requests)
    assert asked == 2  # /search and /stock/symbol
    assert _run(capsys, "symbols", "search", "apple")[0] == 0
    assert len(finnhub.requests) == asked
    assert _run(capsys, "symbols", "search", "apple", "--no-cache")[0] == 0
    assert len(finnhub.requests) == asked + 2


def test_no_key_is_one_line_naming_the_variable(
    finnhub: FinnhubDouble, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FINNHUB_API_KEY")
    code, _, err = _run(capsys, "symbols", "search", "apple")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: FINNHUB_API_KEY: no Finnhub API key: set FINNHUB_API_KEY (or FINNHUB_API_KEY_FILE to a file holding it)"
    ]
    assert finnhub.requests == []


def test_the_key_can_come_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "finnhub-key"
    secret.write_text(KEY + "\n")
    assert finnhub_key({"FINNHUB_API_KEY_FILE": str(secret)}) == KEY
    with pytest.raises(SpecError, match="FINNHUB_API_KEY_FILE: cannot read the key file"):
        finnhub_key({"FINNHUB_API_KEY_FILE": str(tmp_path / "absent")})


def test_a_refused_key_exits_2_naming_the_variable_and_never_shows_the_key(
    finnhub: FinnhubDouble, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINNHUB_API_KEY", "wrong-key-123")
    code, out, err = _run(capsys, "symbols", "search", "apple")
    assert code == 2
    assert "error: Finnhub refused the key in FINNHUB_API_KEY (401: Invalid API key)" in err
    assert "wrong-key-123" not in out + err


def test_429_waits_says_so_and_then_succeeds(finnhub: FinnhubDouble, tmp_path: Path) -> None:
    finnhub.throttle = 2
    said: list[str] = []
    slept: list[float] = []
    client = FinnhubSymbols(KEY, cache_dir=None, min_interval=0.0, notify=said.append, sleep=slept.append)
    matches = client.search("apple")
    assert [m.symbol for m in matches] == ["AAPL", "APLE", "AAPU"]
    assert said == [
        "Finnhub rate limit reached (429); waiting 2 s before retrying",
        "Finnhub rate limit reached (429); waiting 4 s before retrying",
    ]
    assert slept == [2.0, 4.0]


def test_429_honours_retry_after_and_gives_up_with_a_retryable_error(finnhub: FinnhubDouble) -> None:
    finnhub.throttle = 10
    finnhub.retry_after = "7"
    slept: list[float] = []
    client = FinnhubSymbols(KEY, cache_dir=None, min_interval=0.0, sleep=slept.append)
    with pytest.raises(InfrastructureError, match=r"rate limit reached \(429\) after retrying") as info:
        client.search("apple")
    assert info.value.exit_code == 3
    assert slept == [7.0, 7.0, 7.0]


def test_requests_are_spaced_at_the_free_tier_pace(finnhub: FinnhubDouble) -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    client = FinnhubSymbols(KEY, cache_dir=None, clock=lambda: now[0], sleep=sleep)
    client.search("apple")  # two requests: the second waits a whole second
    assert slept == [1.0]


def test_an_unreachable_server_is_retryable_and_the_message_has_no_key() -> None:
    client = FinnhubSymbols(KEY, cache_dir=None, base_url=f"http://127.0.0.1:{free_port()}/api/v1")
    with pytest.raises(InfrastructureError) as info:
        client.search("apple")
    assert "cannot reach Finnhub" in str(info.value) and KEY not in str(info.value)
    assert info.value.__suppress_context__  # a traceback would not show the URL-bearing text either
