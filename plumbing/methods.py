"""Every saliency method of the course, one row each: the one list that lecture 8, the benchmarks, the
contract test and the explorer read.

A method is taught, whole, in its lecture; its row says where it lives and what it is. Each is called
`function(model, inputs, target, **settings)`, and its `settings` are the function's own parameters
after `target`, in order, with the function's defaults (a test holds the two together). Adding a
method is its lecture, one row here and its tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from plumbing.lectures import load_lecture


@dataclass(frozen=True)
class Setting:
    """One parameter of a method: its default, the range or choices a user may pick from, what it means."""

    default: object
    low: float | None = None  # a number's range, both ends allowed
    high: float | None = None
    choices: tuple = ()  # or the values it may take
    meaning: str = ""


@dataclass(frozen=True)
class Method:
    """One saliency method: where it is taught, what its map is, what it costs, its settings."""

    name: str  # as tables and figures name it
    short: str  # in a crowded legend
    lecture: str  # the numbered script that teaches it, e.g. "03_smoothgrad"
    function: str  # its name there
    signed: bool  # a signed map (red-white-blue) or a magnitude (inferno)
    output: str  # "pixel": shaped like the inputs; "cam": one channel, a layer's map upsampled
    networks: str  # what it explains: "any" network, "conv" (it reads a Conv2d layer's map), or
    #                "relu" (built of Conv2d, Linear, ReLU, pooling, BatchNorm after a conv, residual sums)
    cost: str  # model evaluations for one map, in words
    settings: dict[str, Setting] = field(default_factory=dict)
    quick: dict = field(default_factory=dict)  # the cheapest settings that still make a map (tests, --quick)
    compared: bool = False  # lecture 8 compares it with the others
    timed: bool = True  # the benchmark times it against its trusted reference (where it has one)
    marker: str = "o"  # its marker in lecture 8's plots
    # What the literature says of it, which lecture 8 puts to the test: (the claim, the measure of
    # lecture 8 that tests it, the verdict against that measure's chance lines that would agree), or
    # None. "sensitivity-n" means every n the run measures (the least favourable verdict of them).
    claim: tuple[str, str, str] | None = None

    def load(self) -> Callable:
        """The function itself, from its lecture."""
        return getattr(load_lecture(self.lecture), self.function)

    def __call__(self, model, inputs, target=None, **settings):
        return self.load()(model, inputs, target, **settings)


BATCH = Setting(None, 1, 100_000, meaning="model evaluations per forward pass (memory, never the result)")
SEEDED = Setting(None, meaning="a torch.Generator for the random draws (None: torch's global one)")
FEATURES = dict(feature_mask=Setting(None, meaning="feature groups (None: a 7 x 7 grid of cells)"),
                baseline=Setting(0.0, meaning="what a left-out feature becomes"))
LAYER = Setting(None, meaning="the layer whose map it reads: a module or dotted name (None: the last Conv2d)")
SWITCH = (True, False)
AFTER_RANDOMISATION = "abs. rank corr. after randomisation"  # lecture 8's sanity check, by its measure's name

METHODS: dict[str, Method] = {row.name: row for row in [
    Method("vanilla gradient", "gradient", "01_vanilla_gradient_saliency", "vanilla_gradient",
           signed=False, output="pixel", networks="any", cost="1 forward + 1 backward",
           settings={"absolute": Setting(True, choices=SWITCH, meaning="|dS_c/dx|")},
           compared=True, marker="o",
           claim=("noisy: a tiny nudge of the input moves the map (Smilkov et al. 2017)", "max-sensitivity",
                  "worse")),
    Method("gradient x input", "grad x input", "02_gradient_input_saliency", "gradient_x_input",
           signed=True, output="pixel", networks="any", cost="1 forward + 1 backward",
           compared=True, marker="v",
           claim=("its top pixels are the ones the prediction needs (Shrikumar et al. 2016)", "deletion AUC",
                  "better")),
    Method("SmoothGrad", "SmoothGrad", "03_smoothgrad", "smoothgrad",
           signed=False, output="pixel", networks="any", cost="n_samples forward + backward",
           settings={"n_samples": Setting(50, 1, 10_000, meaning="noisy copies averaged"),
                     "noise_level": Setting(0.15, 0.0, 1.0, meaning="sigma, a fraction of each input's range"),
                     "squared": Setting(False, choices=SWITCH, meaning="average squared gradients "
                                                                        "(SmoothGrad-Squared)"),
                     "batch_size": BATCH, "generator": SEEDED},
           quick={"n_samples": 4}, compared=True, marker="s",
           claim=("averaging noisy copies steadies the gradient (Smilkov et al. 2017)", "max-sensitivity",
                  "better")),
    Method("integrated gradients", "IG", "04_integrated_gradients", "integrated_gradients",
           signed=True, output="pixel", networks="any", cost="steps forward + backward",
           settings={"baseline": Setting(None, meaning="x': None (zeros), a number, or a tensor like the inputs"),
                     "steps": Setting(50, 1, 10_000, meaning="points on the straight path from x' to x"),
                     "method": Setting("riemann_trapezoid", meaning="the quadrature rule",
                                       choices=("riemann_left", "riemann_right", "riemann_middle",
                                                "riemann_trapezoid", "gausslegendre")),
                     "batch_size": BATCH},
           quick={"steps": 6}, compared=True, marker="^",
           claim=("completeness: attributions add up to the output change, so sums over pixel sets track the "
                  "output's drop (Ancona et al. 2018)", "sensitivity-n", "better")),
    Method("Grad-CAM", "Grad-CAM", "05_gradcam", "grad_cam",
           signed=False, output="cam", networks="conv", cost="1 forward + 1 backward",
           settings={"layer": LAYER,
                     "relu": Setting(True, choices=SWITCH, meaning="keep only the class's evidence"),
                     "upsample": Setting(True, choices=SWITCH, meaning="bilinear to the input's size")},
           compared=True, marker="D",
           claim=("localises the object: its peak falls on it (Selvaraju et al. 2017)", "pointing game", "better")),
    Method("guided backprop", "guided BP", "06_guided_backpropagation", "guided_backprop",
           signed=True, output="pixel", networks="any", cost="1 forward + 1 backward",
           compared=True, marker="p",
           claim=("fails the sanity check: barely changes when the weights are random (Adebayo et al. 2018)",
                  AFTER_RANDOMISATION, "worse")),
    Method("guided Grad-CAM", "guided Grad-CAM", "07_guided_gradcam", "guided_grad_cam",
           signed=True, output="pixel", networks="conv", cost="2 forward + 2 backward",
           settings={"layer": LAYER}, compared=True, marker="h",
           claim=("inherits guided backprop's sanity failure (Adebayo et al. 2018)", AFTER_RANDOMISATION, "worse")),
    Method("LIME", "LIME", "08_comparative_analysis", "lime",
           signed=True, output="pixel", networks="any", cost="n_samples forward",
           settings={**FEATURES, "n_samples": Setting(1000, 1, 1_000_000, meaning="coalitions drawn"),
                     "kernel_width": Setting(0.25, 0.01, 10.0, meaning="the proximity kernel's width"),
                     "batch_size": BATCH, "generator": SEEDED},
           quick={"n_samples": 12}, compared=True, timed=False, marker="P",
           claim=("a surrogate that changes with its samples: two seeds agree no more than two random maps",
                  "seed agreement", "no difference")),
    Method("SHAP", "SHAP", "08_comparative_analysis", "kernel_shap",
           signed=True, output="pixel", networks="any", cost="2^M forward (exact, M <= 16) or n_samples forward",
           settings={**FEATURES,
                     "n_samples": Setting(None, 1, 1_000_000, meaning="coalitions (None: exact when it can)"),
                     "batch_size": BATCH, "generator": SEEDED},
           quick={"n_samples": 12}, compared=True, timed=False, marker="X",
           claim=("local accuracy: the values add up to the output's change, so sums over cells track the "
                  "output's drop (Lundberg & Lee 2017)", "sensitivity-n", "better")),
    Method("LRP", "LRP", "09_advanced_techniques", "lrp",
           signed=True, output="pixel", networks="relu", cost="1 forward + 1 backward",
           settings={"rule": Setting("epsilon", choices=("epsilon", "gamma"), meaning="the propagation rule"),
                     "epsilon": Setting(1e-6, 0.0, 1.0, meaning="the stabiliser"),
                     "gamma": Setting(0.25, 0.0, 10.0, meaning="the gamma rule's boost of positive weights")}),
    Method("DeepLIFT", "DeepLIFT", "09_advanced_techniques", "deeplift",
           signed=True, output="pixel", networks="relu", cost="2 forward + 1 backward",
           settings={"baseline": Setting(None, meaning="x': None (zeros), a number, or a tensor like the inputs")}),
]}


def compared() -> list[Method]:
    """The methods lecture 8 compares, in the course's order."""
    return [row for row in METHODS.values() if row.compared]
