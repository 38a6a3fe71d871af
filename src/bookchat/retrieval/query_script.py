"""Whether a question is written mostly in another script than a Latin-script book (a model translation helps)."""

from __future__ import annotations

import unicodedata

# Share of a question's letters outside the Latin script from which it is taken to be in another language.
# Urdu questions about a technical book keep many English terms: in the 20 of bench/data/urdu.jsonl the non-Latin
# share runs from 0.21 ("domain randomization کیا ہے؟") to 0.88, the English questions of bench/data have none, and
# an English question naming a Greek symbol ("What is θ in the DH table?") stays under 0.1.
OTHER_SCRIPT_SHARE = 0.15


def other_script_share(text: str) -> float:
    """Share of the letters of `text` that are not Latin (Arabic, Devanagari, CJK...); 0.0 without letters."""
    letters = other = 0
    for character in text:
        if not character.isalpha():
            continue
        letters += 1
        if not unicodedata.name(character, "").startswith("LATIN"):
            other += 1
    return other / letters if letters else 0.0


def in_other_script(text: str, threshold: float = OTHER_SCRIPT_SHARE) -> bool:
    """True when most of what `text` says is written outside the Latin script (Urdu, Hindi, Chinese...)."""
    return other_script_share(text) >= threshold
