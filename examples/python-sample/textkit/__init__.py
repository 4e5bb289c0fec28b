"""textkit: small text utilities."""

from textkit.counter import top_words, word_counts
from textkit.normalize import normalize
from textkit.receipt import receipt_line, receipt_record
from textkit.slug import slugify, unique_slug
from textkit.stats import lexical_density, longest_word, mean_word_length
from textkit.wrap import wrap_all, wrap_text

__version__ = "0.3.0"

__all__ = [
    "lexical_density",
    "longest_word",
    "mean_word_length",
    "normalize",
    "receipt_line",
    "receipt_record",
    "slugify",
    "top_words",
    "unique_slug",
    "word_counts",
    "wrap_all",
    "wrap_text",
]
