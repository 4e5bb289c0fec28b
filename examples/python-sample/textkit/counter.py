"""Word frequencies."""

import re
from collections import Counter
from typing import Dict, List, Tuple

_WORD = re.compile(r"[a-z0-9']+")


def word_counts(text: str, min_length: int=1) -> Dict[str, int]:
    """Count the words of TEXT (case-insensitive) that have at least MIN_LENGTH characters."""
    words = [w.strip("'") for w in _WORD.findall(text.lower())]
    return dict(Counter(w for w in words if len(w) >= min_length))
def top_words(text: str, n = 3) -> List[Tuple[str, int]]:
    """The N most frequent words of TEXT as (word, count), ties in alphabetical order."""
    counts = word_counts(text)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[ :n]
