"""The dashboard's catalogues: every message of the templates and Python sources translated in
every shipped catalogue (with its placeholders and every plural form), Russian plurals, the
locale's number and date formats, and the locale negotiation."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from jinja2 import Environment

from trademl.serving.ui import i18n
from trademl.serving.ui.i18n import (
    LOCALES,
    catalogue_path,
    format_number,
    format_share,
    format_time,
    negotiate,
    translations,
)
from trademl.serving.ui.pages import ENVIRONMENT

UI = Path(i18n.__file__).parent
SHIPPED = [code for code in LOCALES if code != "en"]  # English is the source language
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s")


def source_messages() -> set[str | tuple[str, str]]:
    """Every message the templates and Python modules ask for, as babel.cfg extracts them."""
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    options = {
        "**/templates/**.html": {
            "extensions": "jinja2.ext.i18n",
            "trim_blocks": "True",
            "lstrip_blocks": "True",
        }
    }
    found: set[str | tuple[str, str]] = set()
    for _, _, message, _, _ in extract_from_dir(str(UI), method_map, options):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


@pytest.mark.parametrize("locale", SHIPPED)
def test_every_message_is_translated(locale: str) -> None:
    catalogue = read_po(catalogue_path(locale).open("rb"), locale=locale)
    entries = {
        (m.id if isinstance(m.id, str) else (m.id[0], m.id[1])): m for m in catalogue if m.id
    }
    wanted = source_messages()
    assert len(wanted) > 150
    missing = sorted(str(m) for m in wanted if m not in entries)
    assert missing == [], f"{locale}: messages without a catalogue entry: {missing}"
    stale = sorted(str(m) for m in entries if m not in wanted)
    assert stale == [], f"{locale}: entries no source asks for: {stale}"
    for key, entry in entries.items():
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        assert "fuzzy" not in entry.flags, key
        assert len(strings) == (catalogue.num_plurals if isinstance(key, tuple) else 1), key
        assert all(strings), f"{locale}: {key!r} is not translated"
        source = key[0] if isinstance(key, tuple) else key
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(source)), (key, text)


@pytest.mark.parametrize(
    ("count", "word"),
    [(1, "свеча"), (2, "свечи"), (4, "свечи"), (5, "свечей"), (11, "свечей"), (12, "свечей"),
     (21, "свеча"), (22, "свечи"), (25, "свечей"), (101, "свеча"), (111, "свечей")],
)  # fmt: skip
def test_russian_plural_forms(count: int, word: str) -> None:
    template = ENVIRONMENT.from_string(
        "{% trans count=n, shown=n|num(0), first='a', last='b' %}{{ shown }} candle stored, "
        "from {{ first }} to {{ last }} (UTC).{% pluralize %}{{ shown }} candles stored, "
        "from {{ first }} to {{ last }} (UTC).{% endtrans %}"
    )
    catalogue = translations("ru")
    text = template.render(
        n=count, locale="ru", gettext=catalogue.gettext, ngettext=catalogue.ngettext
    )
    assert text == f"В хранилище {count} {word}, с a по b (UTC)."


def test_spanish_and_english_plurals() -> None:
    es = translations("es")
    assert es.ngettext("%(shown)s recorded backtest.", "%(shown)s recorded backtests.", 1) == (
        "%(shown)s backtest registrado."
    )
    assert es.ngettext("%(shown)s recorded backtest.", "%(shown)s recorded backtests.", 3) == (
        "%(shown)s backtests registrados."
    )
    en = translations("en")
    assert en.ngettext("one", "many", 2) == "many" and en.gettext("Market") == "Market"


def test_numbers_and_dates_per_locale() -> None:
    value = 30472.0
    assert format_number(value, "en") == "30,472.00"
    assert format_number(value, "ru") == "30\xa0472,00"
    assert format_number(value, "es") == "30.472,00"
    assert format_share(0.505, "ru") == "50,5\xa0%"
    assert format_number(float("nan"), "en") == "-" and format_share(None, "es") == "-"
    bar = datetime(2023, 6, 30, 23, tzinfo=UTC)
    assert format_time(bar, "ru").startswith("30 июн. 2023")
    assert format_time(bar, "es").startswith("30 jun 2023")
    assert format_time(bar, "en").replace("\u202f", " ") == "Jun 30, 2023, 11:00:00 PM"


@pytest.mark.parametrize(
    ("header", "cookie", "chosen", "locale"),
    [
        ("ru-RU,ru;q=0.9,en;q=0.8", None, None, "ru"),
        ("de-DE,es;q=0.5,ru;q=0.4", None, None, "es"),
        ("en;q=0.1,ru;q=0.9", None, None, "ru"),
        ("ru", "es", None, "es"),  # the switcher's cookie beats the browser
        ("ru", "es", "en", "en"),  # and the switcher's choice beats both
        ("fr", None, None, "en"),
        (None, "../../etc/passwd", "<script>", "en"),
        ("ru;q=abc, es;q=nan, ru;q=inf", None, None, "en"),
        ("ru," * 1000, None, None, "en"),  # an oversized header is ignored
    ],
)
def test_locale_negotiation(
    header: str | None, cookie: str | None, chosen: str | None, locale: str
) -> None:
    assert negotiate(header, cookie, chosen) == locale


def test_templates_escape_what_they_render() -> None:
    assert isinstance(ENVIRONMENT, Environment) and ENVIRONMENT.autoescape
    template = ENVIRONMENT.get_template("error.html")
    catalogue = translations("en")
    page = template.render(
        status=404,
        message="<script>alert(1)</script>",
        locale="en",
        gettext=catalogue.gettext,
        ngettext=catalogue.ngettext,
        _=catalogue.gettext,
        navigation=(),
        languages={},
        switcher={},
    )
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
