"""Exercise 2: what do three methods say about the digit CNN's mistakes?

The course's digit CNN (utils.load_mnist_cnn) reads real handwriting it never saw,
the fixed set in exercises/data/heldout_digits.npz (tasks.heldout_digits), and gets
some of it wrong. For each mistake we ask: which pixels argue for the wrong class
rather than the true one? Three methods from the lectures answer:

    vanilla_gradient(model, x, c, absolute=False)      lecture 1, signed dS_c/dx
    integrated_gradients(model, x, c, steps=IG_STEPS)  lecture 4, from a black image (zeros)
    grad_cam(model, x, c, relu=False)                  lecture 5, signed, the last conv layer

Each is linear in the score it explains, so map(predicted) - map(true) is the map of
the margin S_predicted - S_true: red where the pixel pushes towards the wrong class.
For integrated gradients, completeness then says that the contrast map sums to
(S_p - S_t)(x) - (S_p - S_t)(black).

Your tasks (run this file to see which are left, then grade it):
    TODO 1  find_mistakes(model, images, labels)
    TODO 2  explain(model, images, target): the three maps, from the lectures' functions
    TODO 3  contrast(model, images, predicted, true)
    TODO 4  answer_questions(model, images, labels): the dict of computed answers
    TODO 5  WRITTEN: your own words (your teacher reads them)

Grade:    python exercises/grade.py 2 exercises/02_misclassified.py
Run:      python exercises/02_misclassified.py     (a figure in outputs/exercises/ once done)
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

EXERCISES = next((p for p in Path(__file__).resolve().parents if (p / "tasks.py").is_file()), None)
if EXERCISES:  # inside the course folder; grade.py finds tasks.py for a copy kept elsewhere
    sys.path.insert(0, str(EXERCISES))
import tasks  # noqa: E402  (puts the course folder on sys.path)
import utils  # noqa: E402

vanilla = utils.load_lecture("01_vanilla_gradient_saliency")
ig = utils.load_lecture("04_integrated_gradients")
gradcam = utils.load_lecture("05_gradcam")

METHODS = ("vanilla_gradient", "integrated_gradients", "grad_cam")
IG_STEPS = 32  # enough for the completeness check below to hold to a few percent


# %% TODO 1: the mistakes ------------------------------------------------------------------------


def find_mistakes(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices of the misclassified digits in ascending order, the class predicted for each), both long."""
    # TODO 1: the model's predictions (no gradients needed), then the positions where they differ
    # from `labels` (torch.nonzero), and the prediction at each of those positions.
    raise NotImplementedError("write find_mistakes")


# %% TODO 2 and 3: three maps, and their contrast ---------------------------------------------------


def explain(model: nn.Module, images: torch.Tensor, target) -> dict[str, torch.Tensor]:
    """{method name: its signed map (N, 1, H, W) for class `target`} for the three METHODS."""
    # TODO 2: call the three lectures' functions (see the header for the arguments). Keep the maps
    # signed: Grad-CAM's ReLU would throw away the evidence against the class.
    raise NotImplementedError("write explain: a dict of the three maps")


def contrast(model: nn.Module, images: torch.Tensor, predicted, true) -> dict[str, torch.Tensor]:
    """{method: map(predicted) - map(true)}: positive where a pixel argues for the wrong class."""
    # TODO 3: explain both classes, subtract, one entry per method.
    raise NotImplementedError("write contrast: map(predicted) - map(true) for each method")


# %% TODO 4: the questions ----------------------------------------------------------------------------


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per example, the cosine similarity of two maps (N, ...) -> (N,)."""
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def answer_questions(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """The computed answers; each key is one question."""
    # TODO 4: compute each answer with your functions above; return the dict with these keys.
    #   "n_mistakes"                 Q1  how many digits the model gets wrong (an int)
    #   "most_confident_mistake"     Q2  the index into `images` of the mistake whose predicted class
    #                                    has the highest softmax probability
    #   "ig_contrast_sum"            Q3  for that digit, the sum of the integrated-gradients contrast map ...
    #   "margin_change"                  ... and (S_p - S_t)(x) - (S_p - S_t)(black image), p predicted, t true:
    #                                    completeness says these two should nearly agree
    #   "most_class_discriminative"  Q4  the method (a name from METHODS) whose maps for the predicted and
    #                                    the true class differ most: the largest 1 - mean cosine(...) over
    #                                    the mistakes, with the cosine of two maps computed per digit
    #   "share_on_ink"               Q5  {method: the share of the positive part of its contrast map, summed
    #                                    over all the mistakes, that lies on ink (pixels with x > 0)}
    raise NotImplementedError("write answer_questions: the dict of computed answers")


# %% TODO 5: in your own words ------------------------------------------------------------------------

WRITTEN = {  # TODO 5: a few sentences each, after looking at the figure this file makes
    "what_argues_for_the_wrong_class": "",
    "what_each_method_shows": "",
}


# %% The demo ------------------------------------------------------------------------------------------


def main() -> None:
    model = utils.load_mnist_cnn()
    images, labels = tasks.heldout_digits()
    few = slice(0, 2)
    steps = [("find_mistakes (TODO 1)", lambda: find_mistakes(model, images[few], labels[few])),
             ("explain (TODO 2)", lambda: explain(model, images[few], 0)),
             ("contrast (TODO 3)", lambda: contrast(model, images[few], 1, 0)),
             ("answer_questions (TODO 4)", lambda: answer_questions(model, images[:60], labels[:60])),
             ("WRITTEN (TODO 5)", lambda: [_written(key) for key in WRITTEN])]
    if not tasks.report(2, steps):
        return
    answers = answer_questions(model, images, labels)
    for key, value in answers.items():
        print(f"{key}: {value}")
    wrong, predicted = find_mistakes(model, images, labels)
    show = wrong[:6]
    maps = contrast(model, images[show], predicted[:6], labels[show])
    fig, axes = utils.figure_grid(len(show), 4, title="Evidence for the wrong class: map(predicted) - map(true)")
    for row, index in enumerate(show.tolist()):
        utils.show_image(axes[row, 0], images[index, 0].numpy(),
                         f"#{index}: true {int(labels[index])}, read as {int(predicted[row])}")
        for col, name in enumerate(METHODS, start=1):
            heat = utils.scale_for_display(maps[name][row:row + 1, 0].numpy(), signed=True)[0]
            utils.show_heatmap(axes[row, col], heat, name.replace("_", " "), signed=True,
                               outline=images[index, 0].numpy(), label="predicted - true")
    print("figure:", utils.save_figure(fig, tasks.out_dir(), "02_misclassified.png"))


def _written(key: str) -> None:
    if len(WRITTEN[key].split()) < 15:
        raise NotImplementedError(f"write at least a few sentences for WRITTEN[{key!r}]")


if __name__ == "__main__":
    main()
