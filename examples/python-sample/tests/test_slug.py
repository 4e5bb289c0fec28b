from textkit.slug import slugify, unique_slug


def test_slugify_basic():
    assert slugify("Hello, World!") == "hello-world"


def test_slugify_accents_and_separators():
    assert slugify("Crème brûlée / à la_carte") == "creme-brulee-a-la-carte"


def test_slugify_max_length():
    assert slugify("a very long title indeed", max_length=8) == "a-very-l"
    assert slugify("abc def", max_length=4) == "abc"


def test_unique_slug():
    assert unique_slug("Hello World", {"hello-world", "hello-world-2"}) == "hello-world-3"
    assert unique_slug("Fresh", set()) == "fresh"
