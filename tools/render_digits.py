"""Render MNIST-like digits without MNIST: typeset digits and synthetic pen strokes.

    python tools/render_digits.py --grid /tmp/grid.png      # look at what it draws

The first digit CNN of the course was trained on these, when no real handwriting
was at hand; the digit CNN is now trained on real MNIST digits
(tools/train_mnist_cnn.py). What is still used here is `mnist_normalise`, which
tools/digit_data.py applies to the UCI digits. Two kinds of digit are drawn:

* typeset digits, in the TrueType fonts that ship with matplotlib (DejaVu,
  STIX, Computer Modern), slanted, squeezed and thickened at random;
* "handwritten" digits: each digit is a few pen strokes (smooth curves through
  control points, or straight lines), from several templates per digit that
  cover common handwriting styles (a 1 with and without its flag and base, a 7
  with and without its cross bar, an open and a closed 4, a 2 with and without
  a loop, a 9 with a straight or a curved stem...). Every control point is
  jittered, so no two are alike. Half are drawn with a pen whose width
  changes along the stroke (pressure, thinner where the pen lands and lifts),
  and a quarter with a thick pen.

The slant follows real handwriting: most digits lean right by 0 to 25
degrees, a few lean left or much further right.

Both are then distorted (rotation, shear, aspect, elastic distortion as in
Simard et al. 2003, blur, now and then a coarse low-resolution scan, a little
noise) and normalised the way LeCun normalised MNIST: the digit is fitted
into a 20x20 box keeping its aspect ratio, anti-aliased, and pasted into a
28x28 image so that its centre of mass is at the centre. That last step
matters a lot: a CNN trained on digits placed any other way does poorly on
real MNIST.

Output: float32 arrays (N, 28, 28) in [0, 1], a light stroke on black.
Everything is deterministic given the seed.
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
CANVAS = 112  # the strokes are drawn at 4x the 28-pixel scale, then shrunk (anti-aliasing)
BOX = 20  # MNIST fits each digit into a 20x20 box ...
SIDE = 28  # ... inside a 28x28 image


# %% Normalisation as in MNIST --------------------------------------------------------------


def mnist_normalise(ink: np.ndarray) -> np.ndarray:
    """A large grey digit (H, W), ink > 0, -> 28x28 in [0, 1], MNIST style.

    Crop to the ink, shrink so the longer side is 20 pixels (keeping the aspect
    ratio, with a Lanczos filter so edges become grey levels), then paste into
    28x28 so that the centre of mass lands on pixel (14, 14), as in MNIST.
    """
    ink = np.clip(np.asarray(ink, dtype=np.float32), 0.0, None)
    top = float(ink.max())
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    if top <= 0:
        return out
    rows = np.flatnonzero((ink > 0.1 * top).any(axis=1))
    cols = np.flatnonzero((ink > 0.1 * top).any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] / top
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray((crop * 255).astype(np.uint8)).resize((new_w, new_h), Image.LANCZOS)
    small = np.asarray(small, dtype=np.float32) / 255.0
    cy, cx = ndimage.center_of_mass(small)
    y0, x0 = int(round(SIDE / 2 - cy)), int(round(SIDE / 2 - cx))
    y0, x0 = min(max(y0, 0), SIDE - new_h), min(max(x0, 0), SIDE - new_w)
    out[y0:y0 + new_h, x0:x0 + new_w] = small
    return out


# %% Pen-stroke templates -------------------------------------------------------------------
# Coordinates in a unit box, x to the right, y downwards; a digit is about 0.6 wide.
# A stroke is ("s", points): a smooth curve through the points, or ("l", points): straight
# lines. Sharp corners are where two strokes meet (the pen's round caps join them).


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 9):
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    t = np.radians(np.linspace(start, end, n))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in t]


TEMPLATES: dict[int, list[list[tuple[str, list]]]] = {
    0: [
        [("s", _arc(0.5, 0.5, 0.36, 0.5, -100, 275, 12))],
        [("s", _arc(0.5, 0.5, 0.4, 0.5, -80, -450, 12))],  # drawn the other way, a slight gap
        [("s", _arc(0.5, 0.5, 0.26, 0.5, -90, 280, 12))],  # narrow
        [("s", [(0.55, 0.0), (0.25, 0.2), (0.15, 0.6), (0.4, 1.0), (0.75, 0.85), (0.85, 0.4),
                (0.65, 0.05), (0.45, 0.05)])],  # egg-shaped
    ],
    1: [
        [("l", [(0.5, 0.0), (0.5, 1.0)])],
        [("l", [(0.5, 0.0), (0.45, 1.0)])],
        [("l", [(0.3, 0.2), (0.5, 0.0)]), ("l", [(0.5, 0.0), (0.5, 1.0)])],  # with a flag
        [("l", [(0.3, 0.22), (0.52, 0.0)]), ("l", [(0.52, 0.0), (0.52, 1.0)]),
         ("l", [(0.3, 1.0), (0.74, 1.0)])],  # flag and base
        [("s", [(0.22, 0.3), (0.4, 0.15), (0.55, 0.0)]), ("l", [(0.55, 0.0), (0.5, 1.0)])],  # long flag
        [("s", [(0.5, 0.0), (0.52, 0.5), (0.48, 1.0)])],  # a slightly bent stroke
    ],
    2: [
        [("s", [(0.22, 0.25), (0.36, 0.05), (0.58, 0.0), (0.76, 0.15), (0.74, 0.4), (0.5, 0.68),
                (0.2, 1.0)]), ("l", [(0.2, 1.0), (0.82, 1.0)])],
        [("s", [(0.2, 0.2), (0.45, 0.0), (0.72, 0.1), (0.72, 0.38), (0.45, 0.7), (0.22, 0.95),
                (0.16, 1.0)]), ("s", [(0.16, 1.0), (0.45, 0.95), (0.85, 0.98)])],
        [("s", [(0.2, 0.25), (0.42, 0.02), (0.7, 0.06), (0.74, 0.32), (0.55, 0.6), (0.3, 0.86),
                (0.22, 0.99), (0.3, 1.0), (0.36, 0.84), (0.28, 0.82), (0.3, 0.93), (0.55, 1.0),
                (0.85, 0.96)])],  # with a loop at the bottom left
        [("s", [(0.15, 0.3), (0.4, 0.0), (0.75, 0.05), (0.78, 0.35), (0.2, 1.0)]),
         ("l", [(0.2, 1.0), (0.8, 0.98)])],
        [("s", [(0.2, 0.22), (0.42, 0.02), (0.7, 0.06), (0.74, 0.3), (0.55, 0.58), (0.3, 0.85),
                (0.2, 0.97), (0.3, 1.0), (0.42, 0.9), (0.32, 0.8), (0.22, 0.9), (0.35, 0.98),
                (0.6, 0.99), (0.85, 0.94)])],  # a big loop at the bottom left
        [("s", [(0.15, 0.25), (0.4, 0.0), (0.72, 0.05), (0.78, 0.3), (0.6, 0.55), (0.35, 0.8),
                (0.18, 0.95), (0.3, 1.0), (0.45, 0.85), (0.35, 0.75), (0.25, 0.85), (0.4, 0.97),
                (0.65, 1.0), (0.9, 0.9)])],
        [("s", [(0.12, 0.35), (0.3, 0.05), (0.6, 0.0), (0.8, 0.2), (0.7, 0.48), (0.42, 0.72),
                (0.2, 0.88), (0.12, 0.98), (0.25, 1.0), (0.35, 0.9), (0.28, 0.84), (0.2, 0.92),
                (0.45, 0.97), (0.95, 0.95)])],  # wide, with a compact loop
        [("s", [(0.1, 0.3), (0.35, 0.02), (0.7, 0.02), (0.85, 0.25), (0.6, 0.6), (0.25, 0.88),
                (0.15, 1.0), (0.32, 0.96), (0.5, 0.9), (0.7, 0.95), (0.92, 1.0)])],  # wavy base
        [("s", [(0.08, 0.3), (0.28, 0.03), (0.62, 0.0), (0.84, 0.2), (0.74, 0.45), (0.48, 0.68),
                (0.24, 0.84), (0.1, 0.97), (0.28, 1.0), (0.52, 0.9), (0.5, 0.74), (0.32, 0.78),
                (0.3, 0.94), (0.6, 1.0), (0.95, 0.96)])],  # wide, with a big cursive loop
        [("s", [(0.32, 0.32), (0.18, 0.2), (0.32, 0.03), (0.62, 0.0), (0.8, 0.18), (0.68, 0.48),
                (0.35, 0.78), (0.12, 1.0)]), ("l", [(0.12, 1.0), (0.9, 0.98)])],  # curled start
        [("s", [(0.15, 0.25), (0.4, 0.0), (0.75, 0.08), (0.75, 0.4), (0.45, 0.72), (0.15, 0.97),
                (0.1, 1.0), (0.35, 0.9), (0.6, 0.92), (0.9, 1.0)])],  # round top, sagging base
    ],
    3: [
        [("s", [(0.2, 0.12), (0.45, 0.0), (0.72, 0.1), (0.72, 0.33), (0.42, 0.48)]),
         ("s", [(0.42, 0.48), (0.76, 0.62), (0.78, 0.87), (0.5, 1.0), (0.2, 0.9)])],
        [("s", [(0.22, 0.1), (0.5, 0.0), (0.75, 0.15), (0.65, 0.38), (0.45, 0.47), (0.7, 0.55),
                (0.8, 0.78), (0.6, 0.98), (0.3, 0.98), (0.18, 0.85)])],
        [("l", [(0.2, 0.0), (0.78, 0.0)]), ("l", [(0.78, 0.0), (0.45, 0.4)]),
         ("s", [(0.45, 0.4), (0.72, 0.5), (0.8, 0.75), (0.6, 0.98), (0.35, 1.0), (0.18, 0.88)])],
    ],
    4: [
        [("l", [(0.25, 0.0), (0.15, 0.62)]), ("l", [(0.15, 0.62), (0.85, 0.62)]),
         ("l", [(0.66, 0.1), (0.66, 1.0)])],  # open top
        [("l", [(0.6, 0.0), (0.12, 0.68)]), ("l", [(0.12, 0.68), (0.85, 0.68)]),
         ("l", [(0.6, 0.0), (0.6, 1.0)])],  # closed, like print
        [("l", [(0.3, 0.0), (0.2, 0.55)]), ("s", [(0.2, 0.55), (0.5, 0.58), (0.85, 0.5)]),
         ("l", [(0.7, 0.05), (0.62, 1.0)])],
        [("l", [(0.55, 0.0), (0.15, 0.6)]), ("l", [(0.15, 0.6), (0.85, 0.6)]),
         ("l", [(0.68, 0.25), (0.65, 1.0)])],
        [("s", [(0.22, 0.0), (0.16, 0.42), (0.3, 0.6), (0.6, 0.58), (0.85, 0.5)]),
         ("l", [(0.72, 0.0), (0.66, 1.0)])],  # a rounded corner, like a u with a tail
        [("l", [(0.25, 0.1), (0.18, 0.55)]), ("l", [(0.18, 0.55), (0.82, 0.52)]),
         ("l", [(0.68, 0.0), (0.66, 1.0)])],
    ],
    5: [
        [("l", [(0.8, 0.0), (0.3, 0.0)]), ("l", [(0.3, 0.0), (0.25, 0.45)]),
         ("s", [(0.25, 0.45), (0.5, 0.38), (0.76, 0.52), (0.78, 0.8), (0.55, 0.99), (0.2, 0.9)])],
        [("l", [(0.3, 0.0), (0.24, 0.42)]),
         ("s", [(0.24, 0.42), (0.55, 0.38), (0.78, 0.6), (0.7, 0.9), (0.4, 1.0), (0.18, 0.88)]),
         ("l", [(0.3, 0.0), (0.78, 0.02)])],
        [("l", [(0.75, 0.0), (0.32, 0.05)]), ("l", [(0.32, 0.05), (0.25, 0.5)]),
         ("s", [(0.25, 0.5), (0.6, 0.45), (0.8, 0.7), (0.62, 0.97), (0.3, 0.95)])],
    ],
    6: [
        [("s", [(0.7, 0.02), (0.42, 0.2), (0.24, 0.55), (0.26, 0.88), (0.5, 1.0), (0.74, 0.85),
                (0.72, 0.6), (0.5, 0.5), (0.27, 0.62)])],
        [("s", [(0.62, 0.0), (0.35, 0.3), (0.25, 0.7), (0.4, 0.98), (0.65, 0.95), (0.72, 0.72),
                (0.5, 0.58), (0.3, 0.72)])],
        [("s", [(0.75, 0.1), (0.5, 0.0), (0.3, 0.2), (0.22, 0.6), (0.35, 0.95), (0.62, 0.97),
                (0.75, 0.75), (0.55, 0.55), (0.25, 0.65)])],
    ],
    7: [
        [("l", [(0.18, 0.0), (0.82, 0.0)]), ("l", [(0.82, 0.0), (0.4, 1.0)])],
        [("l", [(0.18, 0.0), (0.82, 0.0)]), ("l", [(0.82, 0.0), (0.42, 1.0)]),
         ("l", [(0.4, 0.52), (0.78, 0.5)])],  # crossed
        [("l", [(0.18, 0.12), (0.2, 0.0)]), ("l", [(0.2, 0.0), (0.82, 0.02)]),
         ("s", [(0.82, 0.02), (0.62, 0.4), (0.5, 1.0)])],  # a hook and a curved stem
        [("s", [(0.2, 0.05), (0.5, 0.0), (0.82, 0.02)]), ("l", [(0.82, 0.02), (0.5, 1.0)])],
    ],
    8: [
        [("s", [(0.72, 0.15), (0.5, 0.0), (0.27, 0.13), (0.3, 0.33), (0.5, 0.47), (0.75, 0.65),
                (0.75, 0.9), (0.5, 1.0), (0.25, 0.9), (0.25, 0.65), (0.5, 0.47), (0.7, 0.3),
                (0.72, 0.15)])],
        [("s", _arc(0.5, 0.24, 0.2, 0.24, -90, 275, 10)), ("s", _arc(0.5, 0.73, 0.26, 0.27, -90, 275, 10))],
        [("s", [(0.3, 0.12), (0.5, 0.0), (0.7, 0.12), (0.65, 0.3), (0.35, 0.62), (0.3, 0.88),
                (0.5, 1.0), (0.72, 0.88), (0.68, 0.62), (0.35, 0.3), (0.3, 0.12)])],
        [("s", [(0.68, 0.1), (0.52, 0.0), (0.38, 0.1), (0.42, 0.3), (0.6, 0.5), (0.78, 0.72),
                (0.66, 0.97), (0.35, 0.98), (0.25, 0.75), (0.45, 0.5), (0.65, 0.3), (0.68, 0.1)])],  # small top
        [("s", _arc(0.52, 0.22, 0.2, 0.22, 90, 450, 10)),
         ("s", [(0.52, 0.44), (0.28, 0.62), (0.3, 0.92), (0.55, 1.0), (0.75, 0.85), (0.7, 0.6),
                (0.52, 0.44)])],  # two loops drawn apart
        [("s", [(0.75, 0.05), (0.45, 0.0), (0.3, 0.2), (0.55, 0.45), (0.72, 0.7), (0.55, 0.98),
                (0.28, 0.88), (0.35, 0.6), (0.6, 0.35), (0.75, 0.05)])],  # narrow, upright
    ],
    9: [
        [("s", _arc(0.45, 0.25, 0.25, 0.25, 0, 365, 10)), ("l", [(0.7, 0.25), (0.68, 1.0)])],
        [("s", [(0.72, 0.15), (0.5, 0.0), (0.25, 0.12), (0.25, 0.38), (0.5, 0.47), (0.72, 0.3),
                (0.72, 0.15)]), ("l", [(0.72, 0.15), (0.7, 1.0)])],
        [("s", [(0.72, 0.15), (0.5, 0.0), (0.25, 0.12), (0.25, 0.38), (0.5, 0.47), (0.72, 0.3),
                (0.72, 0.1)]), ("s", [(0.72, 0.1), (0.72, 0.5), (0.6, 0.85), (0.35, 1.0)])],
        [("s", _arc(0.5, 0.26, 0.26, 0.26, 10, 370, 10)), ("l", [(0.76, 0.3), (0.55, 1.0)])],
        [("s", _arc(0.48, 0.22, 0.22, 0.22, -10, 350, 10)),
         ("s", [(0.7, 0.18), (0.72, 0.55), (0.6, 0.88), (0.35, 1.0), (0.15, 0.9)])],  # hooked stem
        [("s", _arc(0.45, 0.3, 0.3, 0.3, 0, 360, 10)), ("s", [(0.75, 0.3), (0.7, 0.7), (0.62, 1.0)])],  # big head
        [("s", [(0.75, 0.05), (0.5, 0.0), (0.25, 0.12), (0.28, 0.35), (0.55, 0.4), (0.75, 0.12)]),
         ("l", [(0.75, 0.12), (0.45, 1.0)])],  # open head, slanted stem
    ],
}


def _catmull_rom(points: np.ndarray, per_segment: int = 8) -> np.ndarray:
    """A smooth curve through `points` (K, 2): centripetal-free, uniform Catmull-Rom."""
    if len(points) < 3:
        return points
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    out.append(points[-1:])
    return np.vstack(out)


def _random_affine(rng: np.random.Generator, rotate: float = 15.0) -> np.ndarray:
    """A 2x2 matrix: aspect change, shear (slant) and rotation.

    The slant (a shear; negative here leans right, as y points down) is drawn
    like real handwriting's: most writers lean right by 0 to 25 degrees, a few
    lean left or much further right.
    """
    angle = np.radians(rng.uniform(-rotate, rotate))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lean = rng.normal(12.0, 9.0) if rng.random() < 0.85 else rng.uniform(-18.0, 40.0)
    slant = np.array([[1.0, -np.tan(np.radians(np.clip(lean, -20.0, 40.0)))], [0.0, 1.0]])
    aspect = np.diag([np.exp(rng.uniform(-0.35, 0.45)), 1.0])
    return rot @ slant @ aspect


def draw_strokes(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic handwritten digit, large (CANVAS x CANVAS), ink in [0, 1]."""
    template = TEMPLATES[digit][rng.integers(len(TEMPLATES[digit]))]
    matrix = _random_affine(rng)
    jitter = rng.uniform(0.015, 0.045)
    curves = []
    shared: dict[tuple[float, float], np.ndarray] = {}  # strokes meeting at a point stay joined
    for kind, pts in template:
        pts = np.asarray(pts, dtype=np.float64)
        moved = []
        for x, y in pts:
            key = (round(x, 3), round(y, 3))
            if key not in shared:
                shared[key] = np.array([x, y]) + rng.normal(0.0, jitter, 2)
            moved.append(shared[key])
        pts = np.asarray(moved)
        curve = _catmull_rom(pts) if kind == "s" else pts
        curves.append((curve - 0.5) @ matrix.T)
    every = np.vstack(curves)
    low, high = every.min(axis=0), every.max(axis=0)
    extent = max(high[0] - low[0], high[1] - low[1], 0.05)
    # The digit's longer side becomes 4 * 20 = 80 canvas pixels, so the pen width in canvas
    # pixels is 4x its width after MNIST normalisation (real MNIST strokes: about 1.5 to 4 px).
    scale = 4 * BOX / extent
    pen = 4 * (rng.uniform(1.5, 4.3) if rng.random() < 0.75 else rng.uniform(3.5, 5.5))  # some thick pens
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    centre = (low + high) / 2
    if rng.random() < 0.5:  # a pen of constant width
        for curve in curves:
            xy = (curve - centre) * scale + CANVAS / 2
            points = [tuple(p) for p in xy]
            draw.line(points, fill=255, width=max(1, int(round(pen))))
            r = pen / 2  # round caps (and, for straight strokes, round joints)
            for x, y in (points if len(points) < 6 else (points[0], points[-1])):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    else:  # pressure changes along the stroke: a chain of round dabs of varying width
        depth, waves, phase = rng.uniform(0.1, 0.45), rng.uniform(0.5, 2.0), rng.uniform(0, 2 * np.pi)
        taper = rng.random() < 0.5  # thinner where the pen lands and lifts
        for curve in curves:
            xy = (curve - centre) * scale + CANVAS / 2
            length = np.r_[0.0, np.cumsum(np.hypot(*np.diff(xy, axis=0).T))]
            s = np.linspace(0.0, length[-1], max(2, int(length[-1] / 1.5) + 1))
            dense = np.stack([np.interp(s, length, xy[:, 0]), np.interp(s, length, xy[:, 1])], 1)
            u = s / max(length[-1], 1e-6)
            width = pen * (1 + depth * np.sin(2 * np.pi * waves * u + phase))
            if taper:
                width = width * np.clip(0.55 + 0.45 * np.minimum(u, 1 - u) / 0.15, 0.55, 1.0)
            for (x, y), w in zip(dense, width):
                r = max(w, 2.0) / 2
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(image, dtype=np.float32) / 255.0


# %% Typeset digits -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """The TrueType fonts that ship with matplotlib and have all ten digits."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    wanted = ("DejaVuSans", "DejaVuSerif", "DejaVuSansMono", "STIXGeneral", "cmr10", "cmss10",
              "cmtt10", "cmb10", "cmmi10", "cmti10")
    return tuple(sorted(str(p) for p in folder.glob("*.ttf")
                        if p.stem.startswith(wanted) and "Display" not in p.stem))


@functools.lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def draw_font(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One typeset digit in a random matplotlib font, slanted, squeezed, thickened."""
    fonts = font_files()
    font = _font(fonts[rng.integers(len(fonts))], 72)
    image = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), str(digit), fill=255, font=font, anchor="mm")
    inverse = np.linalg.inv(_random_affine(rng))  # PIL wants the output-to-input map
    c = CANVAS / 2
    offset = np.array([c, c]) - inverse @ np.array([c, c])
    image = image.transform(image.size, Image.AFFINE,
                            (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1]),
                            resample=Image.BILINEAR)
    grow = rng.choice([-1, 0, 0, 1, 2, 3])  # stroke thickness: erode or dilate
    if grow > 0:
        image = image.filter(ImageFilter.MaxFilter(2 * int(grow) + 1))
    elif grow < 0:
        image = image.filter(ImageFilter.MinFilter(3))
    return np.asarray(image, dtype=np.float32) / 255.0


# %% Distortions and the whole pipeline ------------------------------------------------------


def elastic(image: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """Simard et al. (2003): move each pixel along a smoothed random field (alpha, sigma in pixels)."""
    h, w = image.shape
    k = 4  # the field is smooth: make it at a quarter of the resolution, then enlarge it (fast)
    small = rng.uniform(-1, 1, (2, h // k, w // k))
    field = np.stack([ndimage.zoom(ndimage.gaussian_filter(f, sigma / k, mode="constant"), k, order=1)
                      for f in small]) * alpha / k  # / k: coarse noise is smoothed over k times fewer pixels
    dy, dx = field[0][:h, :w], field[1][:h, :w]
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return ndimage.map_coordinates(image, [yy + dy, xx + dx], order=1, mode="constant")


def render_digit(digit: int, rng: np.random.Generator, font_fraction: float = 0.25,
                 clean: bool = False) -> np.ndarray:
    """One MNIST-like digit: (28, 28) float32 in [0, 1], light on black.

    `clean` leaves out the blur and the noise (for pictures shown to people).
    """
    big = draw_font(digit, rng) if rng.random() < font_fraction else draw_strokes(digit, rng)
    if rng.random() < 0.8:  # elastic distortion at 4x scale (Simard's sigma 4 px at 28x28)
        big = elastic(big, rng, alpha=rng.uniform(20, 80), sigma=rng.uniform(12, 18))
    if rng.random() < 0.08 and not clean:  # a coarse scan: lose the detail, keep the shape
        low = Image.fromarray((np.clip(big, 0, 1) * 255).astype(np.uint8))
        side = int(rng.integers(10, 20))
        big = np.asarray(low.resize((side, side), Image.BOX).resize((80, 80), Image.BICUBIC),
                         dtype=np.float32) / 255.0
    digit28 = mnist_normalise(big)
    if rng.random() < 0.2 and not clean:
        digit28 = ndimage.gaussian_filter(digit28, rng.uniform(0.3, 1.0))
        digit28 /= max(float(digit28.max()), 1e-6)
    if rng.random() < 0.3 and not clean:
        digit28 = digit28 + (digit28 > 0) * rng.normal(0, 0.04, digit28.shape).astype(np.float32)
    return np.clip(digit28, 0.0, 1.0).astype(np.float32)


def _render_chunk(job: tuple[np.random.SeedSequence, int, float]) -> tuple[np.ndarray, np.ndarray]:
    seed, n, font_fraction = job
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.stack([render_digit(int(d), rng, font_fraction) for d in labels]) if n else \
        np.zeros((0, SIDE, SIDE), np.float32)
    return (images * 255).round().astype(np.uint8), labels.astype(np.int64)


def render_dataset(n: int, seed: int | Sequence[int], workers: int = 1, font_fraction: float = 0.25,
                   chunk: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """`n` rendered digits: (uint8 images (n, 28, 28), int64 labels (n,)), deterministic in `seed`.

    The work is cut into chunks with their own child seeds, so the result does not
    depend on `workers` (processes used).
    """
    sizes = [min(chunk, n - start) for start in range(0, n, chunk)]
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    jobs = [(s, size, font_fraction) for s, size in zip(seeds, sizes)]
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:  # safe next to torch
            parts = pool.map(_render_chunk, jobs)
    else:
        parts = [_render_chunk(job) for job in jobs]
    if not parts:
        return np.zeros((0, SIDE, SIDE), np.uint8), np.zeros(0, np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def save_grid(path: Path, n: int = 200, seed: int = 1) -> Path:
    """A picture of `n` rendered digits (20 a row), to check by eye that they look like MNIST."""
    images, labels = render_dataset(n, seed)
    order = np.argsort(labels, kind="stable")
    images = images[order]
    rows = int(np.ceil(n / 20))
    grid = np.zeros((rows * 30, 20 * 30), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, 20)
        grid[r * 30 + 1:r * 30 + 29, c * 30 + 1:c * 30 + 29] = image
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)
    return Path(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=Path, help="save a grid of rendered digits to this PNG")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    if args.grid is None:
        parser.error("nothing to do: give --grid FILE")
    print(f"wrote {save_grid(args.grid, seed=args.seed)}")


if __name__ == "__main__":
    main()
