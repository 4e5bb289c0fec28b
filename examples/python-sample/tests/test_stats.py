import pytest

from textkit.stats import lexical_density, longest_word, mean_word_length


def test_mean_word_length():
    assert mean_word_length("ab abcd") == 3.0
    assert mean_word_length("   ") == 0.0


def test_longest_word():
    assert longest_word("a bbb cc ddd") == "bbb"
    assert longest_word("") is None


def test_lexical_density():
    assert lexical_density("a a b") == pytest.approx(2 / 3)
    assert lexical_density("") == 0
