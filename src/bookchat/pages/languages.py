"""Language tags for translations: their English names (for the prompt) and their writing direction."""

from __future__ import annotations

from typing import Literal

Direction = Literal["ltr", "rtl"]

# The languages a prompt names in words; any other valid tag is passed to the model as the tag itself.
LANGUAGE_NAMES = {
    "ar": "Arabic", "bn": "Bengali", "de": "German", "en": "English", "es": "Spanish", "fa": "Persian",
    "fr": "French", "he": "Hebrew", "hi": "Hindi", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "nl": "Dutch", "pa": "Punjabi", "ps": "Pashto", "pt": "Portuguese", "ru": "Russian",
    "sd": "Sindhi", "sw": "Swahili", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "zh": "Chinese",
}  # fmt: skip
# Languages written right to left in their usual script (CLDR), and scripts that are right to left whatever
# the language (a `-Arab` subtag makes Punjabi right to left, `-Latn` makes Urdu left to right).
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ku-arab", "ps", "sd", "ug", "ur", "yi"})
RTL_SCRIPTS = frozenset({"arab", "hebr", "syrc", "thaa", "nkoo", "adlm", "rohg", "mand", "samr"})
LTR_SCRIPTS = frozenset({"latn", "cyrl", "deva", "hans", "hant", "grek"})


def normalize_tag(tag: str) -> str:
    """Tags are case-insensitive (BCP 47 §2.1.1): compared and cached lower-case."""
    return tag.strip().lower()


def direction(tag: str) -> Direction:
    """`rtl` for a right-to-left language or script, else `ltr`."""
    parts = normalize_tag(tag).split("-")
    scripts = [part for part in parts[1:] if len(part) == 4 and part.isalpha()]
    if scripts:
        if scripts[0] in RTL_SCRIPTS:
            return "rtl"
        if scripts[0] in LTR_SCRIPTS:
            return "ltr"
    return "rtl" if parts[0] in RTL_LANGUAGES else "ltr"


def language_name(tag: str) -> str:
    """ "Urdu" for `ur` or `ur-PK`; the tag itself for a language the table does not name."""
    return LANGUAGE_NAMES.get(normalize_tag(tag).split("-")[0], tag)
