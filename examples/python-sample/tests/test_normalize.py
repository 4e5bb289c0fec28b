from textkit.normalize import normalize


def test_normalize_quotes():
    assert normalize("\u201cquoted\u201d \u2018x\u2019") == "\"quoted\" 'x'"


def test_normalize_spaces_keep_lines():
    assert normalize("a  \t b\n  c   d ") == "a b\nc d"


def test_normalize_dashes():
    assert normalize("1\u20132 \u2014 3") == "1-2 - 3"
