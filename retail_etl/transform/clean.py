"""Cleaning, before anything is compared or stored: text trimmed and white space collapsed
(empty is NULL), emails lower-cased, countries as ISO 3166-1 alpha-2 codes."""

from __future__ import annotations

from functools import cache

import polars as pl
import pycountry

# Names people write that pycountry does not list under these spellings.
_COUNTRY_ALIASES = {
    "usa": "US", "u.s.": "US", "u.s.a.": "US", "united states of america": "US",
    "america": "US", "uk": "GB", "u.k.": "GB", "great britain": "GB", "britain": "GB",
    "england": "GB", "scotland": "GB", "wales": "GB", "northern ireland": "GB",
    "south korea": "KR", "north korea": "KP", "russia": "RU", "vietnam": "VN",
    "holland": "NL", "the netherlands": "NL", "czechia": "CZ", "turkey": "TR",
    "iran": "IR", "syria": "SY", "laos": "LA", "bolivia": "BO", "venezuela": "VE",
    "tanzania": "TZ", "moldova": "MD", "taiwan": "TW", "ivory coast": "CI",
}


@cache
def country_codes() -> dict[str, str]:
    """Lower-cased country name or code -> alpha-2."""
    m: dict[str, str] = {}
    for c in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            v = getattr(c, attr, None)
            if v:
                m[v.lower()] = c.alpha_2
    m.update(_COUNTRY_ALIASES)
    return m


def text(c: pl.Expr) -> pl.Expr:
    cleaned = c.str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(cleaned != "").then(cleaned)


def email(c: pl.Expr) -> pl.Expr:
    return text(c).str.to_lowercase()


def country(c: pl.Expr) -> pl.Expr:
    """A recognisable name or code becomes its alpha-2 code; anything else stays as cleaned."""
    cleaned = text(c)
    codes = country_codes()
    return cleaned.str.to_lowercase().replace_strict(
        list(codes), list(codes.values()), default=cleaned, return_dtype=pl.String
    )


def verbatim(c: pl.Expr) -> pl.Expr:
    """JSON kept as sent (collapsing its white space would change the strings inside it)."""
    return pl.when(c != "").then(c)


CLEANERS = {"id": text, "text": text, "email": email, "country": country, "json": verbatim}
