import os


def f(x):
    if x == None:
        return 1
    if x == None:
        return 1
    return os.sep
