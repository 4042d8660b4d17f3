"""Time and peak memory of SmoothGrad and Integrated Gradients (lectures 3 and 4) against Captum.

    python benchmarks/bench_gradient_family.py                      # ResNet-18 at 224, 2 images
    python benchmarks/bench_gradient_family.py --steps 16 64 --size 112 --repeats 1

Every configuration runs in a fresh Python process, so its peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is its own: tracemalloc does not see
PyTorch's CPU allocations, and one process's peak would hide the next one's. The
"extra" column is that peak minus the process's peak after loading the model and
the inputs, i.e. what the method itself needed. Both implementations do the same
work: `steps` model evaluations per image, `batch_size` evaluations per forward
pass (Captum: `internal_batch_size`, and `nt_samples_batch_size` = batch_size / N).
The network is a random ResNet-18 (no download needed); timings are wall-clock,
the best of `--repeats` runs, ours and Captum's
alternating so that other load on the machine slows both alike; peaks are the largest seen.
"""
from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(method: str, impl: str, steps: int, args: argparse.Namespace) -> dict:
    """One configuration, measured in this (fresh) process."""
    import torch
    from torchvision.models import resnet18

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = resnet18().eval()
    x = torch.randn(args.n, 3, args.size, args.size)
    target = list(range(args.n))
    noise_level = 0.15
    sigma = float(noise_level * (x.max() - x.min()))  # one sigma for Captum, for both examples
    if method == "ig":
        ours = importlib.import_module("04_integrated_gradients")
        from captum.attr import IntegratedGradients

        run = {"ours": lambda: ours.integrated_gradients(model, x, target, None, steps, "riemann_trapezoid",
                                                         args.batch_size),
               "captum": lambda: IntegratedGradients(model).attribute(
                   x, target=target, n_steps=steps, method="riemann_trapezoid",
                   internal_batch_size=args.batch_size)}[impl]
    else:
        ours = importlib.import_module("03_smoothgrad")
        from captum.attr import NoiseTunnel, Saliency

        run = {"ours": lambda: ours.smoothgrad(model, x, target, steps, noise_level,
                                               batch_size=args.batch_size),
               "captum": lambda: NoiseTunnel(Saliency(model)).attribute(
                   x, nt_type="smoothgrad", nt_samples=steps, stdevs=sigma, target=target, abs=False,
                   nt_samples_batch_size=max(1, args.batch_size // args.n))}[impl]
    before = peak_rss_mb()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"method": method, "impl": impl, "steps": steps, "time_s": min(times),
            "peak_mb": peak_rss_mb(), "extra_mb": peak_rss_mb() - before}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 256],
                        help="IG steps and SmoothGrad samples per image")
    parser.add_argument("--batch-size", type=int, default=16, help="model evaluations per forward pass")
    parser.add_argument("--n", type=int, default=2, help="images per call")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration (best counts)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--methods", nargs="+", choices=["ig", "smoothgrad"], default=["ig", "smoothgrad"])
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "IMPL", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, impl, steps = args.worker
        print(json.dumps(worker(method, impl, int(steps), args)))
        return

    shared = ["--batch-size", str(args.batch_size), "--n", str(args.n), "--size", str(args.size),
              "--repeats", "1", "--threads", str(args.threads)]
    print(f"random ResNet-18, {args.n} images of {args.size}x{args.size}, batch_size {args.batch_size}, "
          f"{args.threads} threads, best of {args.repeats} (ours and Captum alternate, one process per run)")
    print(f"{'method':>10} {'impl':>7} {'steps':>6} {'time s':>8} {'peak MB':>8} {'extra MB':>9}")
    for method in args.methods:
        for steps in args.steps:
            runs: dict[str, list[dict]] = {"ours": [], "captum": []}
            for repeat in range(args.repeats):  # alternate, so a busy machine slows both alike
                for impl in ("ours", "captum") if repeat % 2 == 0 else ("captum", "ours"):
                    command = [sys.executable, __file__, "--worker", method, impl, str(steps), *shared]
                    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                    runs[impl].append(json.loads(out.strip().splitlines()[-1]))
            for impl, rs in runs.items():
                print(f"{method:>10} {impl:>7} {steps:>6} {min(r['time_s'] for r in rs):8.2f} "
                      f"{max(r['peak_mb'] for r in rs):8.0f} {max(r['extra_mb'] for r in rs):9.0f}",
                      flush=True)

if __name__ == "__main__":
    main()
