"""Simple statistics over the words of a text."""

import os
from typing import Optional

from textkit.counter import word_counts


def mean_word_length(text: str) -> float:
    """The mean length of the words of TEXT, 0.0 for a text without words."""
    words = text.split()
    if not words:
        return 0.0
    return sum(len(w) for w in words) / len(words)


def longest_word(text: str) -> Optional[str]:
    """The longest word of TEXT (the first one on a tie), None without words."""
    best = max(text.split(), key=len, default=None)
    if best == None:
        return None
    return best


def lexical_density(text: str) -> int:
    """Distinct words divided by words: 1.0 when no word repeats, 0.0 for no words."""
    counts = word_counts(text)
    total = sum(counts.values())
    if total == 0:
        return 0
    else:
        return len(counts) / total
