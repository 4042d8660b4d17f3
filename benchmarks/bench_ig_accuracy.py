"""Integrated gradients: how many model evaluations bring completeness within 5% and 1%?

    OMP_NUM_THREADS=1 python benchmarks/bench_ig_accuracy.py            # 3 photos, a few minutes
    OMP_NUM_THREADS=1 python benchmarks/bench_ig_accuracy.py --out benchmarks/results_ig_accuracy.md
    OMP_NUM_THREADS=1 python benchmarks/bench_ig_accuracy.py --photos 5 --max-steps 256
    python benchmarks/bench_ig_accuracy.py --quick                       # seconds, for CI

Wall time per evaluation is already at its limit (about one batched forward and
backward pass per path point), so what is left to win is the number of evaluations.
On EfficientNet-Lite0 (pretrained, offline) and the photos in data/, for the black
baseline (-1 in the network's [-1, 1] input space) and the zero baseline (0: mid-grey),
this measures, per quadrature rule, the gradient evaluations each photo needs before
its completeness error |sum IG - (S(x) - S(x'))| is within 5% and 1% of
|S(x) - S(x')|, beside Captum's default (`gausslegendre`, 50 steps) and its error.

Completeness needs only one number per path point, dS/dalpha = grad S . (x - x'),
because sum_i IG_i = sum_k w_k dS/dalpha(alpha_k). So every rule is scored from one
cache of path points: the nodes of left, right, middle and trapezoid at 2, 4, 8, ...
steps all lie on the dyadic grid k / 2^j. A scheme's cost is the number of distinct
points it needs, counted as that scheme would pay for them on its own:
  - "doubling": the rule at 2, 4, 8, ... steps, stopping at the first count whose error
    is within the tolerance. Left, right and trapezoid reuse every earlier node (the
    trapezoid rule at 2m intervals is the mean of the trapezoid and the midpoint rules
    at m), so their cost is the last step count; middle and Gauss-Legendre reuse none
    (the sum of all counts tried).
  - "adaptive": the trapezoid rule on a mesh that splits the intervals with the largest
    own error. On [a, b] the exact integral of dS/dalpha is S(b) - S(a), which the forward
    pass gives for free, so each interval knows its error. "every segment" stops when
    the sum of |interval errors| is within the tolerance, not only their signed sum.
The two forward passes S(x) and S(x') that any check needs are not counted.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

import flags  # noqa: E402  (puts the course folder on sys.path)
import utils  # noqa: E402

ig = utils.load_lecture("04_integrated_gradients")

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
REUSES_NODES = {"riemann_left": True, "riemann_right": True, "riemann_trapezoid": True,
                "riemann_middle": False}
TOLERANCES = (0.05, 0.01)
CAPTUM_STEPS = 50
GAUSS_STEPS = (25,)  # half of Captum's 50; Gauss-Legendre reuses no node, so each count is paid in full


class PathCache:
    """S_c and dS_c/dalpha at points of the straight path from x' to x, computed once each."""

    def __init__(self, model, x, x_baseline, c: int, batch_size: int):
        self.model, self.x, self.x_baseline, self.c, self.batch_size = model, x, x_baseline, c, batch_size
        self.values: dict[float, tuple[float, float]] = {}

    def __call__(self, alphas) -> tuple[np.ndarray, np.ndarray]:
        alphas = [float(a) for a in alphas]
        missing = [a for a in dict.fromkeys(alphas) if a not in self.values]
        direction = self.x - self.x_baseline  # (1, C, H, W)
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            a = torch.tensor(chunk, dtype=self.x.dtype).view(-1, 1, 1, 1)
            path = (self.x_baseline + a * direction).requires_grad_(True)  # (B, C, H, W)
            with torch.enable_grad():
                scores = self.model(path)[:, self.c]  # (B,)
                grads, = torch.autograd.grad(scores.sum(), path)  # each point's own gradient
            slopes = (grads * direction).flatten(1).double().sum(1)  # (B,) dS/dalpha
            for alpha, s, g in zip(chunk, scores.double().tolist(), slopes.tolist()):
                self.values[alpha] = (s, g)
        scores, slopes = zip(*(self.values[a] for a in alphas))
        return np.array(scores), np.array(slopes)

    def change(self) -> float:
        """S_c(x) - S_c(x')."""
        scores, _ = self([0.0, 1.0])
        return float(scores[1] - scores[0])


def rule_error(path: PathCache, method: str, steps: int) -> float:
    """Completeness error of `method` with `steps` nodes, as a signed fraction of S(x) - S(x')."""
    alphas, weights = ig.quadrature(method, steps)
    _, slopes = path(alphas.tolist())
    return (float(weights.numpy() @ slopes) - path.change()) / path.change()


def adaptive(path: PathCache, tolerance: float, max_points: int, every_segment: bool):
    """Trapezoid rule on a mesh refined where the intervals' own errors are largest.

    Returns (points used, signed error as a fraction of S(x) - S(x')), points None if
    `max_points` were not enough.
    """
    mesh = np.array([0.0, 1.0])
    while True:
        scores, slopes = path(mesh)
        local = np.diff(mesh) * (slopes[1:] + slopes[:-1]) / 2 - np.diff(scores)  # each interval's error
        change = path.change()
        error = local.sum() / change
        measure = np.abs(local).sum() / abs(change) if every_segment else abs(error)
        if measure <= tolerance:
            return len(mesh), error
        room = max_points - len(mesh)
        if room <= 0:
            return None, error
        order = np.argsort(-np.abs(local))  # the worst intervals first ...
        share = np.cumsum(np.abs(local[order]))
        worst = order[:min(room, int(np.searchsorted(share, share[-1] / 2)) + 1)]  # ... half the total error
        mesh = np.sort(np.concatenate([mesh, (mesh[worst] + mesh[worst + 1]) / 2]))


def doubling(path: PathCache, method: str, tolerance: float, max_steps: int):
    """(evaluations paid, error) at the first of 2, 4, 8, ... steps within `tolerance`; None if none
    is before the evaluations paid would pass `max_steps`."""
    paid, steps, error = 0, 2, None
    while True:
        nodes = steps + 1 if method == "riemann_trapezoid" else steps  # the trapezoid: steps intervals
        paid = nodes if REUSES_NODES[method] else paid + nodes
        if paid > max_steps:
            return None, error
        error = rule_error(path, method, nodes)
        if abs(error) <= tolerance:
            return paid, error
        steps *= 2


def captum_default(model, x, x_baseline, c: int, batch_size: int) -> float:
    """Captum's IntegratedGradients with its defaults (gausslegendre, 50 steps): its error."""
    from captum.attr import IntegratedGradients

    _, delta = IntegratedGradients(model).attribute(
        x, baselines=x_baseline, target=c, n_steps=CAPTUM_STEPS, internal_batch_size=batch_size,
        return_convergence_delta=True)
    return float(delta)


def main(argv=None) -> None:
    parser = flags.OneLineParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=utils.int_in_range(1, len(utils.PHOTOS)), default=3,
                        help=f"the first N photos of data/, 1 to {len(utils.PHOTOS)} (default 3)")
    parser.add_argument("--size", type=flags.side, default=224, help="image side in pixels (the network's 224)")
    parser.add_argument("--max-steps", type=utils.int_in_range(2, 10**6), default=129,
                        help="the most path points any scheme may spend per path, at least 2 (default 129)")
    parser.add_argument("--batch-size", type=flags.count, default=16, help="path points per forward pass")
    parser.add_argument("--quick", action="store_true", help="1 photo at 64 px, at most 16 points: for CI")
    parser.add_argument("--out", type=flags.out_file, default=None,
                        help="also write the Markdown table to this file (default: only print it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.photos, args.size, args.max_steps = 1, 64, 17
    torch.manual_seed(0)
    started = time.perf_counter()
    model, categories, transform = utils.load_imagenet_model("efficientnet_lite0")
    model.eval()
    images, names = utils.load_images([utils.DATA_DIR / f for f in utils.PHOTOS[:args.photos]])
    x_all = utils.preprocess(images, transform)
    if args.size != x_all.shape[-1]:
        x_all = torch.nn.functional.interpolate(x_all, size=args.size, mode="bilinear", antialias=True)
    baselines = {"black (-1)": -1.0, "zero (grey)": 0.0}

    paths, captum = [], []
    for i, name in enumerate(names):
        x = x_all[i:i + 1]
        with torch.no_grad():
            c = int(model(x).argmax())
        for label, value in baselines.items():
            x_baseline = torch.full_like(x, value)
            path = PathCache(model, x, x_baseline, c, args.batch_size)
            paths.append((name, categories[c], label, path))
            captum.append(captum_default(model, x, x_baseline, c, args.batch_size) / path.change())
            print(f"{name} ({categories[c]}), {label}: S(x) - S(x') = {path.change():.3f}, "
                  f"Captum's default off by {captum[-1]:+.1%}", flush=True)

    schemes = {f"{m} (doubling)": (lambda p, t, m=m: doubling(p, m, t, args.max_steps)) for m in RULES}
    schemes["adaptive trapezoid (lecture 4's --tolerance)"] = lambda p, t: adaptive(p, t, args.max_steps,
                                                                                     every_segment=False)
    schemes["adaptive, every segment"] = lambda p, t: adaptive(p, t, args.max_steps, every_segment=True)
    rows = []
    for scheme, run in schemes.items():
        cells = []
        for tolerance in TOLERANCES:
            paid = [run(path, tolerance)[0] for *_, path in paths]
            missed = sum(p is None for p in paid)
            spent = [p for p in paid if p is not None]
            cells.append(f"> {args.max_steps} ({missed} of {len(paid)} missed)" if missed
                         else f"{max(spent)} (mean {np.mean(spent):.0f})")
        rows.append((scheme, *cells))
        print(f"{scheme}: {cells}", flush=True)
    gauss = {n: [rule_error(path, "gausslegendre", n) for *_, path in paths] for n in GAUSS_STEPS}
    for n, errors in gauss.items():
        worst = max(abs(e) for e in errors)
        within = [f"{n}" if worst <= t else f"not at {n} (worst {worst:.0%})" for t in TOLERANCES]
        rows.append((f"gausslegendre, {n} steps (fixed)", *within))
    worst_captum = max(abs(e) for e in captum)
    missed = f"not at {CAPTUM_STEPS} (worst {worst_captum:.0%})"
    rows.append((f"Captum default: gausslegendre, {CAPTUM_STEPS} steps",
                 *[str(CAPTUM_STEPS) if worst_captum <= t else missed for t in TOLERANCES]))

    n_paths = len(paths)
    lines = [f"EfficientNet-Lite0 (pretrained), {args.photos} photos of data/ at {args.size}x{args.size} "
             f"({', '.join(names)}), black and zero baselines: {n_paths} paths. Evaluations = gradient "
             f"evaluations per photo and baseline, the worst of the {n_paths} paths (mean in brackets); "
             f"at most {args.max_steps} per path.",
             "",
             "| scheme | every path within 5% | every path within 1% |",
             "| --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += ["", "Completeness error, signed, as a share of S(x) - S(x'):", "",
              "| photo (class) | baseline | S(x) - S(x') | Captum default (GL 50) | "
              + " | ".join(f"GL {n}" for n in GAUSS_STEPS) + " | trapezoid 33 | trapezoid 129 |",
              "| --- | --- | --- | --- | " + " | ".join("---" for _ in GAUSS_STEPS) + " | --- | --- |"]
    for k, (name, cls, label, path) in enumerate(paths):
        traps = [f"{rule_error(path, 'riemann_trapezoid', n):+.1%}" if n <= args.max_steps + 1 else "-"
                 for n in (33, 129)]
        lines.append(f"| {name} ({cls}) | {label} | {path.change():.2f} | {captum[k]:+.1%} | "
                     + " | ".join(f"{gauss[n][k]:+.1%}" for n in GAUSS_STEPS) + f" | {' | '.join(traps)} |")
    command = " ".join(["python benchmarks/bench_ig_accuracy.py", *(sys.argv[1:] if argv is None else argv)])
    load = os.getloadavg()[2] if hasattr(os, "getloadavg") else float("nan")
    lines += ["", f"Measured in {time.perf_counter() - started:.0f} s, {torch.get_num_threads()} thread(s), "
                  f"{os.cpu_count()} cores, load average {load:.1f} over the last 15 minutes: "
                  f"`OMP_NUM_THREADS=1 {command}`"]
    if args.quick:  # the lecture's integrated_gradients_within takes the same path as adaptive() here
        name, _, label, path = paths[0]
        _, steps = ig.integrated_gradients_within(model, path.x, target=path.c, baseline=path.x_baseline,
                                                  tolerance=TOLERANCES[0], max_steps=args.max_steps)
        ours, _ = adaptive(path, TOLERANCES[0], args.max_steps, every_segment=False)
        assert int(steps[0]) == (ours or args.max_steps), (int(steps[0]), ours)
        lines.insert(-2, f"Check: lecture 4's --tolerance took {int(steps[0])} points on {name}, {label}, "
                         "as the adaptive trapezoid here.")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out is not None:
        args.out.write_text("# Integrated gradients: accuracy per evaluation\n\n" + table + "\n")
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
