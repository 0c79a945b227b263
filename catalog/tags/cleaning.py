"""Cleaning a tag name: the one form every tag of a normalized vocabulary has."""

from __future__ import annotations

import re
import unicodedata

from catalog.db.models import TAG

TAG_NAME_MAX = TAG.c.name.type.length
_SYMBOL_WORDS = (("&", " and "), ("+", " plus "), ("@", " at "))
_ASCII_SEPARATORS = re.compile(r"[\W_]+")


def clean_tag(name: str) -> str:
    """The clean form of a tag name: lower case, `&`/`+`/`@` spelled out, every run of
    characters that are not letters or digits turned into one `_`, none at either end. A name
    with no letter or digit at all (`###`) is kept as it is."""
    text = unicodedata.normalize("NFC", name).lower()
    for symbol, word in _SYMBOL_WORDS:
        text = text.replace(symbol, word)
    words = _ASCII_SEPARATORS.split(text) if text.isascii() else _unicode_words(text)
    # NFC again: lower() may decompose (İ → i + U+0307), and a clean name must be stable.
    return unicodedata.normalize("NFC", "_".join(w for w in words if w)) or name


def _unicode_words(text: str) -> list[str]:
    """Runs of letters and digits. Combining marks count as part of a word: Python's `\\w`
    does not match them, which would cut Devanagari or decomposed accents into pieces."""
    words, word = [], []
    for char in text:
        if char != "_" and (char.isalnum() or unicodedata.category(char).startswith("M")):
            word.append(char)
        elif word:
            words.append("".join(word))
            word = []
    words.append("".join(word))
    return words
