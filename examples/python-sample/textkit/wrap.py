"""Word wrapping that keeps words whole and paragraphs apart."""

import textwrap
import re
from typing import Iterable, List


def wrap_text(text: str, width: int = 40) -> List[str]:
    """Wrap TEXT to WIDTH columns; paragraphs are separated by one empty line."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    lines: List[str] = []
    for i, para in enumerate(paragraphs):
        if i:
            lines.append("")
        lines.extend(textwrap.wrap(" ".join(para.split()), width=width))
    return lines


def wrap_all(texts: Iterable[str], width: int = 40) -> List[List[str]]:
    """wrap_text for each of TEXTS."""
    return [wrap_text(t, width) for t in texts]
