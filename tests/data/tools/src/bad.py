import sys
import os, json


def add(a, b):
    unused = 1
    return a+b


def greet(name: str) -> int:
    return "hello " + name   # wrong return type


def long_line():
    return "this is a deliberately long line that goes well beyond the seventy nine characters"


class thing:
    pass


print(undefined_name)
