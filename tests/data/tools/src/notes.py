def f(x: int) -> None:
    reveal_type(x)
    y: str = x
