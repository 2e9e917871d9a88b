"""Self-contained HTML pages (the backtest and monitoring reports): plotly.js inline once, so a
page opens offline, written atomically."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from plotly.offline import get_plotlyjs

from trademl.atomic import atomic_path


def write_page(path: str | Path, title: str, style: str, sections: Sequence[str]) -> Path:
    """Write ``sections`` (HTML fragments) as one page titled ``title``; returns ``path``."""
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{style}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body>{''.join(sections)}</body></html>\n"
    )
    final = Path(path)
    with atomic_path(final) as temp:
        Path(temp).write_text(document, encoding="utf-8")
    return final
