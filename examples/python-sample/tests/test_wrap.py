from textkit.wrap import wrap_all, wrap_text


def test_wrap_text_keeps_words():
    lines = wrap_text("the quick brown fox jumps over the lazy dog", width=15)
    assert lines == ["the quick brown", "fox jumps over", "the lazy dog"]


def test_wrap_text_paragraphs():
    assert wrap_text("one two\n\nthree", width=20) == ["one two", "", "three"]


def test_wrap_all():
    assert wrap_all(["a b", "c"], width=10) == [["a b"], ["c"]]
