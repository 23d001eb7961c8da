"""Where vista keeps what it can rebuild: trained encoders, measured dataset attributes."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cfg_cache_dir: str = "") -> Path:
    """``cfg_cache_dir`` if set, else ``$VISTA_CACHE``, else ``~/.cache/vista``."""
    if cfg_cache_dir:
        return Path(cfg_cache_dir)
    return Path(os.environ.get("VISTA_CACHE", Path.home() / ".cache" / "vista"))
