"""Every method of the course against its trusted reference, on the same work: time, limit, memory.

    python benchmarks/bench_methods.py --out benchmarks/results.md   # the full tables (~25 CPU minutes)
    python benchmarks/bench_methods.py --quick    # every row on small images, ~1.5 CPU minutes
    python benchmarks/bench_methods.py --smoke    # seconds; what CI runs (fails only if something crashes)
    python benchmarks/bench_methods.py --batches 8 --steps 10 --vgg-size 112 --mem-steps 4 16 64
                                                  # what fits a busy shared machine (~6 CPU minutes)

1. Speed. For each network (random ResNet-18 and VGG-11, 224x224) and batch (1 and 8),
   each method of lectures 1 to 7 (and 9's LRP when that lecture exists) runs beside
   its reference (Captum; Grad-CAM also pytorch-grad-cam) on the same model, inputs,
   target classes and amount of work: the same quadrature rule and step count for
   integrated gradients, the same sample count and model evaluations per forward pass
   for SmoothGrad (50 samples and steps on ResNet-18, 10 on VGG-11). Each side is warmed up once, then timed several times, ours and the
   reference alternating (ABBA) so that load from other processes slows both alike;
   the table shows medians and ours / reference. "agree" is max|ours - ref| / max|ref|
   on the warm-up outputs: the check that both sides really computed the same thing
   (SmoothGrad draws different noise, so it has none; the tests compare it on equal noise).

2. Distance from the limit. SmoothGrad and integrated gradients evaluate the network
   n times per example. Their floor is n times one batched forward and backward pass
   of the same examples; the table shows time / (n x that pass).

3. Memory. Peak resident memory of this process while SmoothGrad and integrated
   gradients run at a fixed `batch_size` and a growing step count, above what the
   process held before the call (Linux: the kernel's high-water mark VmHWM, reset via
   /proc/self/clear_refs; freed heap memory is returned with malloc_trim first so an
   earlier run cannot hide this one's allocations). tracemalloc does not see tensors.

One process, `torch.set_num_threads(1)` by default, and the process's CPU time by default
(`--clock wall` for the wall clock, which the table shows as a cross-check): on a machine
shared with other work the wall clock also counts the time spent waiting for a core. With
one thread, CPU time is the work done. Random weights: speed does not depend on what was learned.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.metadata
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import flags  # noqa: E402  (puts the course folder on sys.path)
from plumbing.methods import METHODS, Method  # noqa: E402
import utils  # noqa: E402

ROOT = flags.ROOT
NOISE_LEVEL = 0.15  # SmoothGrad's sigma as a fraction of each image's range (lecture 3's default)
CAM_LAYER = {"resnet18": "layer4", "vgg11": "features.19"}  # the last block's output / last ReLU
LRP_EPSILON = 1e-6  # lecture 9's default stabiliser, on both sides

# steps: SmoothGrad samples and IG steps on ResNet-18; vgg_steps: the same on VGG-11, whose
# 400 evaluations (50 steps x 8 images) at 224x224 take about 9 minutes per run on one busy
# core; time per evaluation is what the ratio and the limit compare, not the step count.
# repeats: least timed runs per side (fast rows get more, up to budget_s per side, at most 4x);
# long_repeats: timed runs per side for SmoothGrad and IG (2 = ABBA, balanced against drift).
# mem_steps start at batch_size (8): fewer steps of one image would not fill one forward pass.
CONFIGS = {
    "full": dict(models=["resnet18", "vgg11"], batches=[1, 8], size=224, vgg_size=224, steps=50, vgg_steps=10,
                 repeats=3, long_repeats=2, budget_s=4.0, mem_steps=[8, 32, 128], mem_size=224),
    "quick": dict(models=["resnet18", "vgg11"], batches=[8], size=64, vgg_size=64, steps=4, vgg_steps=4,
                  repeats=3, long_repeats=2, budget_s=1.0, mem_steps=[8, 32, 128], mem_size=64),
    "smoke": dict(models=["resnet18", "vgg11"], batches=[2], size=32, vgg_size=32, steps=2, vgg_steps=2,
                  repeats=1, long_repeats=1, budget_s=0.0, mem_steps=[8, 16], mem_size=32),
}


# %% The machine ---------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {"CPU": f"{cpu}, {cores} cores visible", "Python": platform.python_version(),
            "torch": torch.__version__, "captum": version("captum"), "grad-cam": version("grad-cam"),
            "torch threads": str(torch.get_num_threads()), "platform": platform.platform()}


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


# %% Timing ------------------------------------------------------------------------------------
@dataclass
class Timing:
    """Seconds per timed run of each side, on the clock the tables use and on the wall clock."""

    ours: list[float] = field(default_factory=list)
    ref: list[float] = field(default_factory=list)
    ours_wall: list[float] = field(default_factory=list)
    ref_wall: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.ref)

    @property
    def wall_ratio(self) -> float:
        return statistics.median(self.ours_wall) / statistics.median(self.ref_wall)


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
CLOCK = "cpu"  # set by --clock


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(seconds on CLOCK, seconds on the wall clock, fn's result)."""
    clock = CLOCKS[CLOCK]
    start, start_wall = clock(), time.perf_counter()
    out = fn()
    return clock() - start, time.perf_counter() - start_wall, out


def time_pair(ours: Callable[[], object], ref: Callable[[], object], repeats: int, budget_s: float = 0.0,
              warm_ours: Callable[[], object] | None = None, warm_ref: Callable[[], object] | None = None,
              ) -> tuple[Timing, object, object]:
    """Warm both up (their outputs are returned), then time them alternately, ABBA.

    A fast row gets more than `repeats` runs, as many as fit in `budget_s` per side (at
    most 4x). SmoothGrad and IG warm up on a cheaper call (`warm_*`) and get `repeats`.
    """
    t_ours, _, out_ours = timed(warm_ours or ours)
    t_ref, _, out_ref = timed(warm_ref or ref)
    if warm_ours is None:
        repeats = max(repeats, min(4 * repeats, int(budget_s / max(t_ours, t_ref, 1e-3))))
    timing = Timing()
    for r in range(repeats):
        order = [("ours", ours), ("ref", ref)] if r % 2 == 0 else [("ref", ref), ("ours", ours)]
        for side, fn in order:
            seconds, wall, _ = timed(fn)
            getattr(timing, side).append(seconds)
            getattr(timing, side + "_wall").append(wall)
    return timing, out_ours, out_ref


def disagreement(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = torch.as_tensor(ours).detach().double(), torch.as_tensor(ref).detach().double().reshape(ours.shape)
    scale = ref.abs().max()
    return float((ours - ref).abs().max() / (scale if scale > 0 else 1.0))


def min_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1], as pytorch-grad-cam returns it."""
    flat = maps.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-7)).view(maps.shape)


# %% The methods, ours and theirs, on the same work --------------------------------------------
def one_pass(model: nn.Module, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    """One batched forward and backward pass to the input: the unit of the limit."""
    leaf = x.detach().clone().requires_grad_(True)
    scores = model(leaf).gather(1, torch.tensor(target)[:, None])
    return torch.autograd.grad(scores.sum(), leaf)[0]


@dataclass
class Row:
    method: str
    reference: str
    ours: Callable[[], object]
    ref: Callable[[], object]
    compare: Callable[[object, object], float] | None = disagreement
    n: int = 0  # model evaluations per example (SmoothGrad, IG); 0 for one-pass methods
    warm_ours: Callable[[], object] | None = None
    warm_ref: Callable[[], object] | None = None


def timed_methods() -> list[Method]:
    """What this benchmark times: every method of the course's table (plumbing/methods.py) marked `timed`."""
    return [row for row in METHODS.values() if row.timed]


def rows_for(model_name: str, model: nn.Module, x: torch.Tensor, target: list[int], steps: int,
             batch_size: int) -> tuple[list[Row], list[str]]:
    """Every (ours, reference) pair for one network and batch, for each timed method of the table in
    its order; notes on the methods that have no row here (no reference, or a network it refuses)."""
    from captum.attr import (GuidedBackprop, GuidedGradCam, InputXGradient, IntegratedGradients,
                             LayerAttribution, LayerGradCam, NoiseTunnel, Saliency)
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = {row.name: row.load() for row in timed_methods()}
    n_examples = x.shape[0]
    layer_name = CAM_LAYER[model_name]
    layer = model.get_submodule(layer_name)
    # Captum takes one sigma for the whole batch; ours takes noise_level per example. Equal
    # work either way; the images are drawn with equal ranges, so sigma is nearly equal too.
    sigma = float(NOISE_LEVEL * (x.flatten(1).amax(1) - x.flatten(1).amin(1)).mean())
    samples_per_pass = max(1, batch_size // n_examples)  # Captum counts noisy copies per example

    def captum_grad_cam():
        cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, x.shape[-2:], "bilinear")

    def pytorch_grad_cam():
        with GradCAM(model, [layer]) as cam:
            maps = cam(x, targets=[ClassifierOutputTarget(c) for c in target])  # (N, H, W) numpy, min-max
        model.zero_grad(set_to_none=True)  # it calls .backward(): leave no .grad behind
        return torch.from_numpy(maps)

    def smoothgrad(n):
        return lambda: ours["SmoothGrad"](model, x, target, n_samples=n, noise_level=NOISE_LEVEL,
                                          batch_size=batch_size)

    def noise_tunnel(n):
        return lambda: NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, target=target, abs=False,
            nt_samples_batch_size=samples_per_pass)

    def ig(n):
        return lambda: ours["integrated gradients"](model, x, target, steps=n, method="gausslegendre",
                                                    batch_size=batch_size)

    def captum_ig(n):
        return lambda: IntegratedGradients(model).attribute(x, target=target, n_steps=n, method="gausslegendre",
                                                            internal_batch_size=batch_size)

    rows = {
        "vanilla gradient": [Row("vanilla gradient", "Captum Saliency", lambda: ours["vanilla gradient"](model, x, target),
                                 lambda: Saliency(model).attribute(x, target=target, abs=True))],
        "gradient x input": [Row("gradient x input", "Captum InputXGradient",
                                 lambda: ours["gradient x input"](model, x, target),
                                 lambda: InputXGradient(model).attribute(x, target=target))],
        "SmoothGrad": [Row(f"SmoothGrad, {steps} samples", "Captum NoiseTunnel(Saliency)", smoothgrad(steps),
                           noise_tunnel(steps), compare=None, n=steps, warm_ours=smoothgrad(1),
                           warm_ref=noise_tunnel(1))],
        "integrated gradients": [Row(f"integrated gradients, {steps} steps", "Captum IntegratedGradients",
                                     ig(steps), captum_ig(steps), n=steps, warm_ours=ig(2), warm_ref=captum_ig(2))],
        "Grad-CAM": [Row(f"Grad-CAM ({layer_name})", "Captum LayerGradCam + interpolate",
                         lambda: ours["Grad-CAM"](model, x, target, layer), captum_grad_cam),
                     Row(f"Grad-CAM ({layer_name})", "pytorch-grad-cam GradCAM",
                         lambda: ours["Grad-CAM"](model, x, target, layer), pytorch_grad_cam,
                         compare=lambda ours_map, ref: disagreement(min_max(ours_map), ref))],
        "guided backprop": [Row("guided backprop", "Captum GuidedBackprop",
                                lambda: ours["guided backprop"](model, x, target),
                                lambda: GuidedBackprop(model).attribute(x, target=target))],
        "guided Grad-CAM": [Row(f"guided Grad-CAM ({layer_name})", "Captum GuidedGradCam",
                                lambda: ours["guided Grad-CAM"](model, x, target, layer),
                                lambda: GuidedGradCam(model, layer).attribute(x, target=target,
                                                                              interpolate_mode="bilinear"))],
    }
    notes = []
    if model_name != "vgg11":
        notes.append(f"LRP: not timed on {model_name} (Captum's LRP refuses BatchNorm and residual additions, so there "
                     "is no reference; ours merges BatchNorm and splits each sum, lecture 9)")
        rows["LRP"] = []
    else:
        from captum.attr import LRP
        from captum.attr._utils.lrp_rules import EpsilonRule

        def captum_lrp():
            for m in model.modules():  # the epsilon rule everywhere, as lecture 9 defines rule="epsilon"
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                    m.rule = EpsilonRule(epsilon=LRP_EPSILON)
            try:
                return LRP(model).attribute(x, target=target)
            finally:
                for m in model.modules():
                    m.__dict__.pop("rule", None)

        rows["LRP"] = [Row("LRP (epsilon rule)", "Captum LRP",
                           lambda: ours["LRP"](model, x, target, rule="epsilon", epsilon=LRP_EPSILON), captum_lrp)]
    notes += [f"{row.name}: not timed, no reference for it here" for row in timed_methods() if row.name not in rows]
    return [r for row in timed_methods() for r in rows.get(row.name, [])], notes


def make_model(name: str) -> nn.Module:
    from torchvision import models

    torch.manual_seed(0)
    return {"resnet18": models.resnet18, "vgg11": models.vgg11}[name]().eval()


def make_inputs(n: int, size: int) -> tuple[torch.Tensor, list[int]]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, size, size, generator=generator) * 4 - 2  # every image spans nearly [-2, 2]
    return x, [(281 + 97 * i) % 1000 for i in range(n)]  # fixed, different classes


# %% Memory ------------------------------------------------------------------------------------
class PeakMemory:
    """Peak resident memory (MB) of this process inside a `with` block, above the start.

    Linux keeps a high-water mark (VmHWM) that writing 5 to /proc/self/clear_refs resets;
    where that is not allowed, a thread samples /proc/self/statm every millisecond.
    """

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:  # give freed heap pages back, so an earlier run's leftovers cannot absorb this one's
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self.before = self._rss()
        self._sampled, self._stop = self.before, threading.Event()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._thread = None
        except OSError:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            self.peak = self._status("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            self.peak = self._sampled
        self.extra = self.peak - self.before

    @staticmethod
    def _status(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MB
        raise OSError(f"no {key} in /proc/self/status")

    def _rss(self) -> float:
        return self._status("VmRSS")

    def _sample(self) -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        while not self._stop.wait(0.001):
            resident = int(Path("/proc/self/statm").read_text().split()[1]) * page_mb
            self._sampled = max(self._sampled, resident)


def memory_table(steps_list: list[int], size: int, batch_size: int) -> list[list[str]]:
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    model = make_model("resnet18")
    x, target = make_inputs(1, size)
    sigma = float(NOISE_LEVEL * (x.flatten(1).amax(1) - x.flatten(1).amin(1)).mean())
    runs = {
        ("SmoothGrad", "ours"): lambda n: METHODS["SmoothGrad"].load()(
            model, x, target, n_samples=n, noise_level=NOISE_LEVEL, batch_size=batch_size),
        ("SmoothGrad", "Captum"): lambda n: NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, target=target, abs=False,
            nt_samples_batch_size=batch_size),
        ("integrated gradients", "ours"): lambda n: METHODS["integrated gradients"].load()(
            model, x, target, steps=n, method="gausslegendre", batch_size=batch_size),
        ("integrated gradients", "Captum"): lambda n: IntegratedGradients(model).attribute(
            x, target=target, n_steps=n, method="gausslegendre", internal_batch_size=batch_size),
    }
    with torch.no_grad():
        model(x)  # warm: the first call allocates what every later one reuses
    table = []
    for (method, impl), run in utils.progress_bar(runs.items(), "peak memory", total=len(runs)):
        extras = []
        for n in steps_list:
            with PeakMemory() as memory:
                run(n)
            extras.append(memory.extra)
        table.append([method, impl, *(f"{e:.0f}" for e in extras),
                      f"{extras[-1] - extras[0]:+.0f} MB ({extras[-1] / max(extras[0], 1.0):.2f}x)"])
    return table


# %% Tables ------------------------------------------------------------------------------------
def markdown(header: list[str], rows: list[list[str]]) -> str:
    align = ["---" if i < 3 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def ms(seconds: list[float]) -> str:
    value = statistics.median(seconds) * 1000
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = flags.OneLineParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="64x64 images, batch 8, 4 steps: about 1.5 CPU minutes")
    mode.add_argument("--smoke", action="store_true", help="32x32 images, one run each: seconds (CI)")
    parser.add_argument("--models", nargs="+", choices=["resnet18", "vgg11"], help="networks (default both)")
    parser.add_argument("--batches", nargs="+", type=flags.count, help="batch sizes (default 1 8)")
    parser.add_argument("--steps", type=flags.count, help="SmoothGrad samples and IG steps on ResNet-18 (default 50)")
    parser.add_argument("--repeats", type=flags.count, help="least timed runs per side (default 3)")
    parser.add_argument("--size", type=flags.side, help="image side for ResNet-18 (default 224)")
    parser.add_argument("--vgg-size", type=flags.side, help="image side for VGG-11 (default 224; it costs 4x "
                        "ResNet-18's time per image, so a busy machine may want 112)")
    parser.add_argument("--vgg-steps", type=flags.count, help="SmoothGrad samples and IG steps on VGG-11 (default 10)")
    parser.add_argument("--mem-steps", type=flags.count, nargs="+", help="step counts of the memory table (default 8 32 128)")
    parser.add_argument("--mem-size", type=flags.side, help="image side of the memory table (default 224)")
    parser.add_argument("--batch-size", type=flags.count, default=8,
                        help="SmoothGrad / IG model evaluations per forward pass, both sides (default 8)")
    parser.add_argument("--threads", type=flags.count, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="cpu",
                        help="cpu: this process's CPU time (default; on a shared machine the wall clock "
                             "also counts waiting for a core); wall: time.perf_counter")
    memory = parser.add_mutually_exclusive_group()
    memory.add_argument("--no-memory", action="store_true", help="skip the memory table")
    memory.add_argument("--memory-only", action="store_true", help="only the memory table")
    parser.add_argument("--out", type=flags.out_file, default=None,
                        help="also write the tables to this Markdown file (default: only print them)")
    args = parser.parse_args(argv)
    config = dict(CONFIGS["smoke" if args.smoke else "quick" if args.quick else "full"])
    for key in ("models", "batches", "steps", "repeats", "size", "vgg_size", "vgg_steps", "mem_steps", "mem_size"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    out = args.out

    global CLOCK
    CLOCK = args.clock
    torch.set_num_threads(args.threads)
    info = machine()
    load_before = load_average()
    started = time.perf_counter()
    print("\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)

    speed, limit, notes = [], [], []
    for model_name in [] if args.memory_only else config["models"]:
        model = make_model(model_name)
        for n_examples in config["batches"]:
            side = config["vgg_size"] if model_name == "vgg11" else config["size"]
            x, target = make_inputs(n_examples, side)
            steps = config["vgg_steps"] if model_name == "vgg11" else config["steps"]
            utils.stage(f"{model_name}, batch {n_examples}: timing every method against its reference")
            rows, skipped = rows_for(model_name, model, x, target, steps, args.batch_size)
            notes += [f"{model_name}, batch {n_examples}: {s}" for s in skipped if s not in notes]
            fb, _, _ = time_pair(lambda: one_pass(model, x, target), lambda: one_pass(model, x, target),
                                 config["repeats"], config["budget_s"])
            one = statistics.median(fb.ours + fb.ref)
            for row in utils.progress_bar(rows, f"{model_name}, batch {n_examples}"):
                repeats = config["long_repeats"] if row.n else config["repeats"]
                timing, out_ours, out_ref = time_pair(row.ours, row.ref, repeats, config["budget_s"],
                                                      row.warm_ours, row.warm_ref)
                agree = f"{row.compare(out_ours, out_ref):.0e}" if row.compare else "-"
                speed.append([f"{model_name} {side}", str(n_examples), row.method, row.reference, ms(timing.ours),
                              ms(timing.ref), f"**{timing.ratio:.2f}**", f"{timing.wall_ratio:.2f}",
                              str(len(timing.ours)), agree])
                print(" | ".join(speed[-1]), flush=True)
                if row.n:
                    limit.append([f"{model_name} {side}", str(n_examples), row.method, ms([one]),
                                  f"{statistics.median(timing.ours) / (row.n * one):.2f}",
                                  f"{statistics.median(timing.ref) / (row.n * one):.2f}"])
    sections = [
        "## Speed: ours / reference (network and image side, random weights, "
        f"{args.threads} thread{'s' * (args.threads > 1)}, {args.clock} time, median of the timed runs)\n\n"
        + markdown(["network", "batch", "method", "reference", "ours ms", "reference ms", "ours / ref",
                    "wall-clock ours / ref", "runs", "agree"], speed),
        "## Distance from the limit: time / (n x one batched forward + backward pass)\n\n"
        f"SmoothGrad and IG at `batch_size` {args.batch_size} (model evaluations per pass, both sides).\n\n"
        + markdown(["network", "batch", "method", "one pass ms", "ours", "reference"], limit),
    ]
    if not args.no_memory:
        table = memory_table(config["mem_steps"], config["mem_size"], args.batch_size)
        sections.append(
            f"## Peak memory above the start (MB), ResNet-18, one image of {config['mem_size']}x"
            f"{config['mem_size']}, `batch_size` {args.batch_size}, by steps / samples per image\n\n"
            + markdown(["method", "impl", *map(str, config["mem_steps"]),
                        f"{config['mem_steps'][-1]} vs {config['mem_steps'][0]}"], table))
    command = "python benchmarks/bench_methods.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    header = [f"Command: `{command}`; {time.perf_counter() - started:.0f} s; {time.strftime('%Y-%m-%d %H:%M %Z')}.",
              "", *(f"- {k}: {v}" for k, v in info.items()),
              f"- load average (1 / 5 / 15 min) at start: {load_before}; at end: {load_average()}",
              *(f"- {note}" for note in notes)]
    report = "\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n"
    print("\n" + report)
    if out is not None:
        out.write_text("# Benchmark results (written by bench_methods.py)\n\n" + report)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
