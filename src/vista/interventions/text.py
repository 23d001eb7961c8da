"""What generated text says about a label (docs/originals.md §4.7): keyword hits, demographic content rate,
VQA answers judged against the image's true class.

- A keyword hit is a case-insensitive whole-word match (``\\b...\\b``) of any word of a list.
  FairFace's race, gender and age have the seeds' curated lists; any other label uses its class
  names and their synonyms (a digit label ``7`` matches "7" and "seven").
- DCR (demographic content rate) is the fraction of texts with at least one hit.
- A VQA answer to a label's question is correct when it names a synonym of the image's class,
  as a whole word: the original matched substrings, so "male" counted inside "female" and "man"
  inside "woman". An answer to a control question counts as answered when it is longer than
  five characters (as in the original).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from vista.store.layout import FAIRFACE_CLASS_NAMES

_DECADES = ["twenties", "thirties", "forties", "fifties", "sixties", "seventies", "eighties"]

KEYWORDS: dict[str, list[str]] = {
    "race": [
        "white", "black", "asian", "hispanic", "latino", "latina", "indian", "middle eastern",
        "arab", "african", "caucasian", "east asian", "southeast asian", "south asian",
        "european", "pacific islander",
    ],
    "gender": [
        "man", "woman", "male", "female", "boy", "girl", "he", "she", "his", "her", "gentleman",
        "lady",
    ],
    "age": [
        "young", "old", "elderly", "teenager", "teen", "child", "baby", "toddler", "infant",
        "middle-aged", "middle aged", "senior", "adult", "kid", "adolescent", *_DECADES,
    ],
}  # fmt: skip
"""The seeds' curated keyword lists (docs/originals.md §4.7) for FairFace's labels."""


def _numbers(lo: int, hi: int) -> list[str]:
    return [str(i) for i in range(lo, hi + 1)]


FAIRFACE_SYNONYMS: dict[str, dict[str, list[str]]] = {
    "gender": {
        "Male": ["male", "man", "men", "boy", "gentleman", "masculine"],
        "Female": ["female", "woman", "women", "girl", "lady", "feminine"],
    },
    "race": {
        "White": ["white", "caucasian", "european"],
        "Black": ["black", "african", "african american"],
        "Latino_Hispanic": ["latino", "latina", "latinx", "hispanic"],
        "East Asian": ["east asian", "asian", "chinese", "japanese", "korean"],
        "Southeast Asian": [
            "southeast asian", "south-east asian", "asian", "filipino", "vietnamese", "thai",
            "indonesian", "malaysian",
        ],
        "Indian": ["indian", "south asian"],
        "Middle Eastern": ["middle eastern", "arab", "arabic", "persian", "turkish"],
    },
    "age": {
        "0-2": ["baby", "infant", "newborn", "toddler", *_numbers(0, 2)],
        "3-9": ["child", "kid", "young child", *_numbers(3, 9)],
        "10-19": ["teen", "teens", "teenager", "adolescent", *_numbers(10, 19)],
        "20-29": ["twenties", "young adult", *_numbers(20, 29)],
        "30-39": ["thirties", *_numbers(30, 39)],
        "40-49": ["forties", "middle-aged", "middle aged", *_numbers(40, 49)],
        "50-59": ["fifties", "middle-aged", "middle aged", *_numbers(50, 59)],
        "60-69": ["sixties", "senior", "elderly", *_numbers(60, 69)],
        "70+": ["seventies", "eighties", "nineties", "senior", "elderly", *_numbers(70, 99)],
    },
}  # fmt: skip
"""Per class, the answers that name it (docs/originals.md §4.7's tables, matched as whole words)."""

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def is_fairface(label: str, class_names: Sequence[str]) -> bool:
    return list(class_names) == FAIRFACE_CLASS_NAMES.get(label)


def synonyms(label: str, class_names: Sequence[str]) -> list[list[str]]:
    """Per class (in class order), the words that name it."""
    if is_fairface(label, class_names):
        return [FAIRFACE_SYNONYMS[label][c] for c in class_names]
    out = []
    for name in class_names:
        words = {name.lower(), name.lower().replace("_", " "), name.lower().replace("_", "-")}
        if name.isdigit() and int(name) < 10:
            words.add(_DIGITS[int(name)])
        out.append(sorted(words))
    return out


def keywords(label: str, class_names: Sequence[str]) -> list[str]:
    """The words whose presence in a text counts as content about ``label``."""
    if is_fairface(label, class_names):
        return KEYWORDS[label]
    return sorted({w for words in synonyms(label, class_names) for w in words})


def _pattern(words: Sequence[str]) -> re.Pattern[str]:
    alts = sorted({w.lower() for w in words if w}, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in alts) + r")\b", re.IGNORECASE)


def hits(texts: Sequence[str], words: Sequence[str]) -> np.ndarray:
    """Per text: whether any of ``words`` occurs in it as a whole word (case-insensitive)."""
    if not words:
        return np.zeros(len(texts), dtype=bool)
    pat = _pattern(words)
    return np.array([bool(pat.search(t or "")) for t in texts], dtype=bool)


def correct(answers: Sequence[str], y: np.ndarray, per_class: list[list[str]]) -> np.ndarray:
    """Per answer: whether it names a synonym of its image's class ``y``."""
    pats = [_pattern(words) if words else None for words in per_class]
    out = np.zeros(len(answers), dtype=bool)
    for i, (a, c) in enumerate(zip(answers, y, strict=True)):
        pat = pats[int(c)] if 0 <= int(c) < len(pats) else None
        out[i] = bool(pat is not None and pat.search(a or ""))
    return out


def answered(answers: Sequence[str]) -> np.ndarray:
    """Control questions: an answer longer than five characters counts (the original's rule)."""
    return np.array([len((a or "").strip()) > 5 for a in answers], dtype=bool)


QUESTIONS: dict[str, str] = {
    "age": "What is this person's approximate age?",
    "gender": "Describe this person's gender.",
    "race": "What is this person's race or ethnicity?",
}
"""The seeds' VQA probes of FairFace's labels (docs/originals.md §4.6)."""

CONTROL_QUESTIONS = [
    "What is this person wearing?",
    "Describe the background of this image.",
    "What emotion is this person showing?",
]


def question(label: str, class_names: Sequence[str], given: dict[str, str]) -> str:
    """The VQA question of ``label``: the user's, the seeds' for FairFace, else a generic one."""
    if given.get(label):
        return given[label]
    if is_fairface(label, class_names):
        return QUESTIONS[label]
    return f"What {label.replace('_', ' ')} is shown in this image?"
