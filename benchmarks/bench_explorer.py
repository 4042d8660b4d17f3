"""The explorer's speed and memory on EfficientNet-Lite0 and the cat, through the very functions the page calls.

    python benchmarks/bench_explorer.py --out benchmarks/results_explorer.md
    python benchmarks/bench_explorer.py --repeats 1          # a quick look

Measures (issue 25's targets in brackets): the five one-pass maps together after a first request (< 1 s);
SmoothGrad and integrated gradients at their defaults (< 10 s each); the top 5 classes' gradients from one
forward and one batched backward (`is_grads_batched=True`) against Captum's `Saliency` called once per
class (<= 0.8 of its time); the process's peak memory (< 2 GB). Times are medians over `--repeats`.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from pathlib import Path

import flags  # noqa: F401  (puts the course folder on sys.path)
from flags import OneLineParser, count, path_flag

from plumbing.errors import InputError, command_line


def parse_arguments(argv):
    parser = OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=count, default=5, help="timed runs per measure (default 5)")
    parser.add_argument("--network", default="efficientnet_lite0", help="default efficientnet_lite0")
    parser.add_argument("--photo", default="cat_chelsea.png", help="a photo of data/ (default cat_chelsea.png)")
    parser.add_argument("--threads", type=count, default=1,
                        help="torch's threads (default 1, as the explorer: see explore.py --help)")
    parser.add_argument("--every-method", action="store_true",
                        help="then run every method of the table once (LIME and SHAP with 128 coalitions: their "
                             "memory depends on the coalitions per forward pass, not on how many), its measures and "
                             "the randomised network, so that the peak memory covers them too")
    parser.add_argument("--out", type=path_flag, default=None,
                        help="also write the table to this markdown file")
    return parser.parse_args(argv)


CPU: dict[int, float] = {}  # id of a wall-time list -> the CPU seconds of the same runs


def timed(function, repeats: int) -> list[float]:
    """Wall seconds of each run; the runs' CPU seconds (this process's, all threads) kept in CPU."""
    seconds, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU[id(seconds)] = cpu
    return seconds


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: kilobytes


@command_line
def main(argv=None) -> None:
    args = parse_arguments(argv)
    import torch
    from captum.attr import Saliency

    torch.set_num_threads(args.threads)

    from explorer import compute
    from plumbing.images import open_image

    if args.network not in compute.available_networks():
        raise InputError(f"--network {args.network} is not available here: {', '.join(compute.available_networks())}")
    net = compute.load_network(args.network)
    x = compute.to_input(net, open_image(compute.DATA_DIR / args.photo))
    top = [i for i, _, _ in compute.top_classes(net, x)]
    fast = {m: {} for m in compute.FAST}
    load = os.getloadavg()
    rows = []

    compute.explain(net, x, None, fast)  # the first request: lectures imported, kernels warmed
    seconds = timed(lambda: compute.explain(net, x, None, fast), args.repeats)
    rows.append(("five one-pass maps together (" + ", ".join(compute.FAST) + ")", seconds, "< 1 s"))
    for name in ("SmoothGrad", "integrated gradients"):
        seconds = timed(lambda name=name: compute.explain(net, x, None, {name: {}}, progress=lambda f, d: None),
                        max(1, min(args.repeats, 2)))
        rows.append((f"{name} at its defaults, with progress", seconds, "< 10 s"))

    saliency = Saliency(net.model)
    batched = lambda: compute.top_classes_gradients(net.model, x, top)
    looped = lambda: [saliency.attribute(x, target=c, abs=False) for c in top]
    batched(), looped()  # warm both
    ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so a burst of load hits both sides alike
        ours += (run := timed(batched, 1))
        ours_cpu += CPU[id(run)]
        theirs += (run := timed(looped, 1))
        theirs_cpu += CPU[id(run)]
    CPU[id(ours)], CPU[id(theirs)] = ours_cpu, theirs_cpu
    same = max(float((a - b[0]).abs().max()) for a, b in zip(batched(), looped()))
    ratio = statistics.median(ours) / statistics.median(theirs)
    ratio_cpu = statistics.median(ours_cpu) / statistics.median(theirs_cpu)
    rows.append(("top 5 classes' gradients, one forward + one batched backward", ours, ""))
    rows.append(("top 5 classes' gradients, Captum Saliency once per class", theirs, ""))

    every = ""
    if args.every_method:
        from plumbing.methods import METHODS

        few = {"LIME": {"n_samples": 128}, "SHAP": {"n_samples": 128}}
        start = time.perf_counter()
        results = compute.explain(net, x, None, {name: few.get(name, {}) for name in METHODS})
        compute.measure(net, x, None, results)
        compute.explain(net, x, None, {"vanilla gradient": {}}, stage=net.stages()[-1])
        failed = [f"{n}: {r.error}" for n, r in results.items() if r.error]
        every = (f"Then every method of the table once ({', '.join(METHODS)}; LIME and SHAP with 128 coalitions), "
                 f"their deletion and insertion curves and a gradient on the randomised network: "
                 f"{time.perf_counter() - start:.0f} s wall" + (f"; no map: {'; '.join(failed)}" if failed else "")
                 + ". The peak memory below includes them.")

    lines = [f"# The explorer on {args.network}", "",
             f"{args.photo}, {net.categories[top[0]]} predicted; {args.repeats} timed runs per measure (SmoothGrad "
             "and IG: at most 2), median (max). The machine's 2 cores were shared with other jobs (load average "
             f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end): every wall time is an upper bound. "
             "CPU seconds are the time this process ran on a core, closer to what an idle machine takes (cache "
             "and memory contention still inflate them).", "",
             "| measure | median wall s | max wall s | median CPU s | target |", "| --- | --- | --- | --- | --- |"]
    for what, s, target in rows:
        lines.append(f"| {what} | {statistics.median(s):.3f} | {max(s):.3f} | {statistics.median(CPU[id(s)]):.3f} "
                     f"| {target} |")
    lines += ["", f"Batched / Captum loop: **{ratio:.2f}** in wall time, {ratio_cpu:.2f} in CPU time (target <= 0.8); "
              f"largest difference between the two "
              f"gradients {same:.1e}.", "",
              *([every, ""] if every else []),
              f"Peak memory of the whole run (resident set, `getrusage`): **{peak_gb():.2f} GB** (target < 2 GB).", "",
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {platform.python_version()}, "
              f"{platform.machine()}.", "",
              f"Command: `python benchmarks/bench_explorer.py --repeats {args.repeats} --threads {args.threads}"
              + (" --every-method" if args.every_method else "")
              + (f" --out {args.out}`" if args.out else "`")]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
