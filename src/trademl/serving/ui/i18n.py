r"""The dashboard's languages: gettext catalogues (Babel), the locale of a request, and the
number and date formats of each locale.

The ``.po`` files under ``locale/`` are the catalogues; they are compiled in memory on first
use (no build step, so a fresh clone and a wheel behave alike). English is the source language:
its messages are the ``msgid`` themselves.

>>> negotiate("ru-RU,ru;q=0.9,en;q=0.5", None, None)
'ru'
>>> negotiate("de-DE", "es", None)
'es'
>>> format_number(1234567.891, "ru", 2)
'1\xa0234\xa0567,89'
"""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime as babel_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import NullTranslations, Translations

LOCALES: tuple[str, ...] = ("en", "ru", "es")
DEFAULT_LOCALE = "en"
LOCALE_COOKIE = "trademl_lang"
CATALOGUES = Path(__file__).parent / "locale"
DOMAIN = "messages"
# What an Accept-Language header may hold before it is ignored (a client's own header).
MAX_ACCEPT_LANGUAGE = 512


def catalogue_path(locale: str) -> Path:
    """The ``.po`` file of ``locale``."""
    return CATALOGUES / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalogue of ``locale`` (English and unknown locales: the source text)."""
    if locale not in LOCALES or locale == DEFAULT_LOCALE:
        return NullTranslations()
    with catalogue_path(locale).open("rb") as source:
        catalog = read_po(source, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def _accepted(header: str | None) -> list[str]:
    """The languages of an Accept-Language header, most preferred first."""
    if not header or len(header) > MAX_ACCEPT_LANGUAGE:
        return []
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and math.isfinite(quality) and quality > 0:
            weighted.append((-quality, position, tag.strip().lower()))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(accept_language: str | None, cookie: str | None, chosen: str | None) -> str:
    """The locale of a request: the switcher's choice (``?lang=``), else the cookie it set,
    else the browser's Accept-Language, else English; anything not shipped is ignored."""
    for explicit in (chosen, cookie):
        if explicit in LOCALES:
            return str(explicit)
    for tag in _accepted(accept_language):
        primary = tag.split("-")[0]
        if primary in LOCALES:
            return primary
    return DEFAULT_LOCALE


def format_number(value: float | int | None, locale: str, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals in the locale's digits and separators (``-`` when
    missing or not finite)."""
    if value is None or not math.isfinite(float(value)):
        return "-"
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return str(format_decimal(value, format=pattern, locale=Locale.parse(locale)))


def format_share(value: float | None, locale: str, digits: int = 1) -> str:
    """``value`` (a fraction) as a percentage in the locale's format."""
    if value is None or not math.isfinite(float(value)):
        return "-"
    parsed = Locale.parse(locale)
    # The locale's own pattern (its sign placement and spacing) with ``digits`` decimals.
    pattern = parsed.percent_formats[None].pattern.replace(
        "#,##0", "#,##0" + ("." + "0" * digits if digits > 0 else ""), 1
    )
    return str(format_percent(value, format=pattern, locale=parsed))


def format_time(value: datetime | None, locale: str) -> str:
    """A UTC timestamp in the locale's medium date and short time (``-`` when missing)."""
    if value is None:
        return "-"
    return str(babel_datetime(value, "medium", tzinfo=UTC, locale=Locale.parse(locale)))
