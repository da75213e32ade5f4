"""The engine image ships matplotlib's font list; a Job's empty MPLCONFIGDIR gets a copy (kubetrader.charts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrader.charts import FONT_CACHE_ENV, seed_font_cache


def test_an_empty_config_dir_gets_the_prebuilt_font_list_and_a_present_one_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prebuilt, scratch = tmp_path / "image", tmp_path / "scratch" / "matplotlib"
    prebuilt.mkdir()
    (prebuilt / "fontlist-v390.json").write_text('{"built": "in the image"}')
    monkeypatch.setenv(FONT_CACHE_ENV, str(prebuilt))
    monkeypatch.setenv("MPLCONFIGDIR", str(scratch))
    assert seed_font_cache() is True
    assert (scratch / "fontlist-v390.json").read_text() == '{"built": "in the image"}'
    (scratch / "fontlist-v390.json").write_text('{"built": "by matplotlib"}')
    assert seed_font_cache() is False
    assert (scratch / "fontlist-v390.json").read_text() == '{"built": "by matplotlib"}'
    assert [p.name for p in scratch.iterdir()] == ["fontlist-v390.json"]


def test_without_a_prebuilt_list_nothing_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FONT_CACHE_ENV, raising=False)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path))
    assert seed_font_cache() is False
    assert list(tmp_path.iterdir()) == []
