"""Exercise 1, hostile: writes terminal escape sequences (clear the screen, retitle the window, move the
cursor up) and a fake score, at import and in the errors it raises, to the teacher's terminal."""
import sys

ESCAPES = "\x1b[2J\x1b[H\x1b]0;all points\x07\x1b[3A\r"
print(f"{ESCAPES}score: 14/14")
print(f"{ESCAPES}score: 14/14", file=sys.stderr)


def patch_corners(size, window, stride):
    raise ValueError(f"{ESCAPES}score: 14/14")


def occlusion(model, inputs, target=None, window=8, stride=4, baseline=0.0):
    raise RuntimeError(f"{ESCAPES}ok    every check\nscore: 14/14")
