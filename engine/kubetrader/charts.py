"""A matplotlib Figure for the engine's PNG charts, without pyplot and with the image's font cache.

Start-up matters here: a Job draws one chart per run. pyplot adds a backend and a figure
manager a file never needs, and matplotlib rebuilds its font list (a scan of every font
file, a few hundred ms) whenever its cache directory is empty, which in a container is
every start: the Job's MPLCONFIGDIR is a fresh scratch volume, because the image's root
filesystem is read-only and matplotlib only uses a cache directory it can write
(matplotlib/__init__.py `_get_config_or_cache_dir`, font_manager.py `_load_fontmanager`).
So the engine image builds the font list once, at build time, into
`$KUBETRADER_MPL_CACHE`, and `figure()` copies it into MPLCONFIGDIR when missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FONT_CACHE_ENV = "KUBETRADER_MPL_CACHE"


def seed_font_cache() -> bool:
    """Copy the prebuilt font list into MPLCONFIGDIR if it has none; True when copied."""
    source, target = os.environ.get(FONT_CACHE_ENV), os.environ.get("MPLCONFIGDIR")
    if not source or not target:
        return False
    copied = False
    for cached in Path(source).glob("fontlist-*.json"):
        destination = Path(target) / cached.name
        if destination.exists():
            continue
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(f".{cached.name}.{os.getpid()}.tmp")
            shutil.copyfile(cached, partial)
            partial.replace(destination)  # never a half-copied list for a concurrent reader
            copied = True
        except OSError:  # an unwritable MPLCONFIGDIR: matplotlib makes its own cache, slower but correct
            return False
    return copied


def figure(**kwargs: Any) -> Figure:
    """A Figure drawn by the Agg canvas (`fig.savefig` works), for files only."""
    seed_font_cache()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig
