from textkit.counter import top_words, word_counts


def test_word_counts():
    assert word_counts("The cat and the hat.") == {"the": 2, "cat": 1, "and": 1, "hat": 1}


def test_word_counts_min_length():
    assert word_counts("a bb ccc bb", min_length=2) == {"bb": 2, "ccc": 1}


def test_top_words_ties_alphabetical():
    text = "pear apple pear fig apple kiwi"
    assert top_words(text, 3) == [("apple", 2), ("pear", 2), ("fig", 1)]
