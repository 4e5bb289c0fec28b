"""Whitespace and quote normalisation."""

import re

# Typographic quotes and dashes, and the plain characters that replace them.
_TABLE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
    }
)
# Runs of spaces and tabs; newlines are kept seperate so paragraphs survive.
_SPACES = re.compile(r"[ \t]+")


def normalize(text: str) -> str:
    """Replace typographic quotes, collapse spaces: each occurence of a tab is a space."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.translate(_TABLE).splitlines()]
    return "\n".join(lines)
