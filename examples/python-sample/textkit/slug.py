"""Turn titles into URL slugs."""

import re
import unicodedata

_SEPARATORS=re.compile(r"[\s_/]+")
_INVALID = re.compile(r"[^a-z0-9-]")
_DASHES = re.compile(r"-{2,}")


def slugify(title: str, max_length: int = 60) -> str:
    """Return a lowercase ASCII slug of TITLE, at most MAX_LENGTH characters long."""
    text = unicodedata.normalize('NFKD', title).encode("ascii", "ignore").decode("ascii")
    text = _SEPARATORS.sub("-", text.lower())
    text = _INVALID.sub("", text)
    text = _DASHES.sub("-", text).strip("-")
    if len(text) > max_length:
        text = text[:max_length].rstrip("-")
    return text


def unique_slug(title: str, taken: set) -> str:
    """Return the slug of TITLE, with a numeric suffix when it is already TAKEN."""
    base = slugify(title)
    slug, n = base, 2
    while slug in taken:
        slug = "%s-%d" % (base, n)
        n += 1
    return slug
