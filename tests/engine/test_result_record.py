"""A result records enough to reproduce it (issue 18, items 3, 4 and 5).

- The range actually used: a future end date (or a start before the data) warns and
  the result carries the real first and last bar, not only the requested dates.
- `data_hash` covers the benchmark's bars: a changed benchmark once left the result id,
  `spec_hash` and `data_hash` unchanged while beta moved.
- Python, pandas, numpy, numba, Backtrader, kubetrader, the git commit of a checkout
  and the sha256 of each raw file the bars came from.
- A failed run says its message once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import platform
import re
from pathlib import Path
from typing import Any

import pytest

from kubetrader.cli.main import main
from kubetrader.data import DataStore
from kubetrader.data.bundled import bundled_dir
from kubetrader.data.loader import clear_cache
from kubetrader.pipeline import execute
from kubetrader.results.schema import SCHEMA_VERSION, ResultDocument
from kubetrader.results.store import read_document

ROOT = Path(__file__).resolve().parents[2]


def _benchmarked(spec: Any, benchmark: str) -> Any:
    """The spec with `data.benchmark` set (validated again, as a YAML file's would be)."""
    wire = spec.to_wire()
    wire["data"]["benchmark"] = benchmark
    return type(spec).model_validate(wire)


def test_a_future_end_date_warns_and_the_result_has_the_real_last_bar(
    bundled_store: Any, make_spec: Any, tmp_path: Path
) -> None:
    spec = make_spec(start="2014-01-01", end="2030-12-31")
    outcome = execute(spec, name="future", output_dir=tmp_path, store=bundled_store, report=False)
    assert outcome.status == "succeeded", outcome.error
    document = read_document(outcome.paths.json)
    meta = document.metadata
    assert (meta.start, meta.end) == ("2014-01-01", "2030-12-31")  # what was asked
    assert (meta.first_bar, meta.last_bar) == ("2014-01-02", "2014-12-31")  # what was used
    assert document.warnings == [
        "ORCL: the data ends 2014-12-31, before the requested end 2030-12-31;"
        " the backtest used 2014-01-02 .. 2014-12-31"
    ]
    assert outcome.summary()["warnings"] == document.warnings


def test_a_start_before_the_data_warns_for_the_benchmark_too(
    bundled_store: Any, make_spec: Any, tmp_path: Path
) -> None:
    spec = _benchmarked(make_spec(start="1998-01-01", end="2000-12-31"), "NVDA")
    outcome = execute(spec, name="early", output_dir=tmp_path, store=bundled_store, report=False)
    assert outcome.status == "succeeded", outcome.error
    document = outcome.document
    assert document is not None
    assert document.metadata.first_bar == "1998-01-02"
    assert document.warnings == [
        "NVDA (benchmark): the data starts 1999-01-22, after the requested start 1998-01-01;"
        " the backtest used 1999-01-22 .. 2000-12-29"
    ]


def test_a_range_inside_the_data_gives_no_warning(bundled_store: Any, make_spec: Any, tmp_path: Path) -> None:
    # 2005-01-01 is a Saturday and 2014-12-31 the data's last bar: nothing to say
    outcome = execute(make_spec(), name="plain", output_dir=tmp_path, store=bundled_store, report=False)
    assert outcome.document is not None and outcome.document.warnings == []
    assert outcome.document.metadata.first_bar == "2005-01-03"


def test_the_cli_prints_the_warning(
    bundled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(bundled_store.root))
    main(
        [
            "backtest",
            "--strategy",
            "strategies.sma_crossover.SMACrossover",
            "--symbols",
            "ORCL",
            "--start",
            "2014-01-01",
            "--end",
            "2030-12-31",
            "--output",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    assert "warning: ORCL: the data ends 2014-12-31, before the requested end 2030-12-31" in captured.err
    assert "2014-01-01 .. 2030-12-31" not in captured.out  # the header shows the bars used
    assert "2014-01-02 .. 2014-12-31" in captured.out


def _store_with_scaled_benchmark_day(root: Path, factor: float) -> DataStore:
    """ORCL and NVDA from the bundled files, one NVDA day's prices scaled by `factor`."""
    store = DataStore(root)
    store.import_file(bundled_dir() / "orcl-1995-2014.txt", "ORCL")
    lines = (bundled_dir() / "nvda-1999-2014.txt").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("2012-03-01"))
    cells = lines[index].split(",")
    cells[1:6] = [f"{float(v) * factor:.6f}" for v in cells[1:6]]
    lines[index] = ",".join(cells)
    nvda = root.parent / f"nvda-{factor}.txt"
    nvda.write_text("\n".join(lines) + "\n")
    store.import_file(nvda, "NVDA")
    return store


def test_data_hash_covers_the_benchmark_bars(make_spec: Any, tmp_path: Path) -> None:
    spec = _benchmarked(make_spec(start="2010-01-01", end="2014-12-31"), "NVDA")
    docs = []
    for factor in (1.0, 1.02):
        clear_cache()
        store = _store_with_scaled_benchmark_day(tmp_path / f"s{factor}" / "data", factor)
        outcome = execute(spec, name="bench", output_dir=tmp_path / f"out{factor}", store=store, report=False)
        assert outcome.document is not None, outcome.error
        docs.append(outcome.document)
    clear_cache()
    plain, scaled = docs
    assert plain.metadata.id == scaled.metadata.id  # the id names the spec (documented), not the data
    assert plain.metadata.spec_hash == scaled.metadata.spec_hash
    assert plain.metrics["beta"] != scaled.metrics["beta"]
    assert plain.metadata.data_hash != scaled.metadata.data_hash
    datasets = {d.symbol: d for d in scaled.metadata.datasets}
    assert datasets["NVDA"].benchmark and not datasets["NVDA"].traded
    assert datasets["ORCL"].traded and not datasets["ORCL"].benchmark


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _head_commit() -> str | None:
    """The commit of this checkout, read the slow way (git itself), to check the engine's cheap reading."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def test_the_result_records_versions_commit_and_raw_file_hashes(
    data_store: Any, make_spec: Any, tmp_path: Path
) -> None:
    outcome = execute(
        _benchmarked(make_spec(start="2010-01-01", end="2012-12-31"), "NVDA"),
        name="record",
        output_dir=tmp_path,
        store=data_store,
        report=False,
    )
    document = outcome.document
    assert document is not None, outcome.error
    meta = document.metadata
    assert document.schema_version == SCHEMA_VERSION == 2
    assert meta.versions["python"] == platform.python_version()
    for package in ("pandas", "numpy", "numba", "backtrader"):
        assert meta.versions[package] == importlib.metadata.version(package)
    assert meta.versions["kubetrader"] == meta.package_version
    expected_commit = _head_commit()
    assert expected_commit is not None, "the tests run from a checkout"
    assert meta.git_commit == expected_commit
    raw = {d.symbol: d.raw_files for d in meta.datasets}
    assert raw == {
        "ORCL": {"orcl-1995-2014.txt": _sha256(bundled_dir() / "orcl-1995-2014.txt")},
        "NVDA": {"nvda-1999-2014.txt": _sha256(bundled_dir() / "nvda-1999-2014.txt")},
    }
    orcl = next(d for d in meta.datasets if d.symbol == "ORCL")
    assert (orcl.first_bar, orcl.last_bar, orcl.bars) == ("2010-01-04", "2012-12-31", 754)
    assert re.fullmatch(r"[0-9a-f]{64}", orcl.data_hash)


def test_git_commit_is_read_from_the_git_files_of_a_worktree_and_of_packed_refs(tmp_path: Path) -> None:
    from kubetrader.results.provenance import read_git_commit

    commit = "0123456789abcdef0123456789abcdef01234567"
    plain = tmp_path / "plain"
    (plain / ".git" / "refs" / "heads").mkdir(parents=True)
    (plain / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (plain / ".git" / "refs" / "heads" / "main").write_text(commit + "\n")
    assert read_git_commit(plain) == commit

    packed = tmp_path / "packed"
    (packed / ".git").mkdir(parents=True)
    (packed / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (packed / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{commit} refs/heads/main\n")
    assert read_git_commit(packed) == commit

    worktree = tmp_path / "wt"
    gitdir = packed / ".git" / "worktrees" / "wt"
    gitdir.mkdir(parents=True)
    (gitdir / "HEAD").write_text("ref: refs/heads/main\n")
    (gitdir / "commondir").write_text("../..\n")
    worktree.mkdir()
    (worktree / ".git").write_text(f"gitdir: {gitdir}\n")
    assert read_git_commit(worktree) == commit

    detached = tmp_path / "detached"
    (detached / ".git").mkdir(parents=True)
    (detached / ".git" / "HEAD").write_text(commit + "\n")
    assert read_git_commit(detached) == commit
    assert read_git_commit(tmp_path / "nothing") is None


def test_a_failed_run_records_its_inputs_and_environment(bundled_store: Any, make_spec: Any, tmp_path: Path) -> None:
    spec = make_spec(params={"fast": 10, "slow": 50}, start="2014-06-01", end="2014-07-28")
    outcome = execute(spec, name="short", output_dir=tmp_path, store=bundled_store, report=False)
    document = read_document(outcome.paths.json)
    assert document.status == "failed"
    assert document.spec == spec.to_wire()
    assert document.spec["broker"]["cash"] == 100_000  # type: ignore[index]
    assert document.metadata.versions["python"] == platform.python_version()


def test_a_failed_run_prints_its_message_once(bundled_store: Any, tmp_path: Path) -> None:
    """In a process of its own: pytest's log capture would hide logging's last-resort handler, which printed it."""
    import os
    import subprocess
    import sys

    argv = [
        sys.executable,
        "-m",
        "kubetrader.cli.main",
        "backtest",
        "--strategy",
        "strategies.sma_crossover.SMACrossover",
    ]
    argv += ["--symbols", "NOPE", "--start", "2014-01-01", "--end", "2014-12-31", "--output", str(tmp_path)]
    env = {**os.environ, "KUBETRADER_DATA_DIR": str(bundled_store.root)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("unknown symbol 'NOPE'") == 1, done.stderr


def test_documents_of_schema_1_are_still_read(sma_orcl_result: Any) -> None:
    """The dashboard reads results written before schema 2: the new fields have defaults."""
    current = json.loads(sma_orcl_result.to_document("old").model_dump_json())
    old = {**current, "schema_version": 1}
    old.pop("warnings")
    for key in ("first_bar", "last_bar", "versions", "git_commit", "datasets"):
        old["metadata"].pop(key)
    document = ResultDocument.model_validate(old)
    assert document.schema_version == 1 and document.metadata.datasets == [] and document.warnings == []


def test_a_document_from_a_newer_schema_is_refused_with_a_clear_message(sma_orcl_result: Any) -> None:
    newer = {**json.loads(sma_orcl_result.to_document("new").model_dump_json()), "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(ValueError, match=f"schema {SCHEMA_VERSION + 1}.*reads schemas up to {SCHEMA_VERSION}"):
        ResultDocument.model_validate(newer)


def test_first_and_last_bar_of_a_result_are_dates(sma_orcl_result: Any) -> None:
    meta = sma_orcl_result.to_document("x").metadata
    assert dt.date.fromisoformat(meta.first_bar) == dt.date(2005, 1, 3)
    assert dt.date.fromisoformat(meta.last_bar) == dt.date(2014, 12, 31)
