"""Exercise 2: what do three methods say about the digit CNN's mistakes?       (instructor solution)

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
    ### BEGIN SOLUTION
    with torch.no_grad():
        predicted = model(images).argmax(1)  # (N,)
    wrong = torch.nonzero(predicted != labels).flatten()  # (M,) ascending
    return wrong, predicted[wrong]
    ### STARTER
    #> # TODO 1: the model's predictions (no gradients needed), then the positions where they differ
    #> # from `labels` (torch.nonzero), and the prediction at each of those positions.
    #> raise NotImplementedError("write find_mistakes")
    ### END SOLUTION


# %% TODO 2 and 3: three maps, and their contrast ---------------------------------------------------


def explain(model: nn.Module, images: torch.Tensor, target) -> dict[str, torch.Tensor]:
    """{method name: its signed map (N, 1, H, W) for class `target`} for the three METHODS."""
    ### BEGIN SOLUTION
    return {
        "vanilla_gradient": vanilla.vanilla_gradient(model, images, target, absolute=False),
        "integrated_gradients": ig.integrated_gradients(model, images, target, baseline=None, steps=IG_STEPS),
        "grad_cam": gradcam.grad_cam(model, images, target, relu=False),  # signed: the contrast needs both signs
    }
    ### STARTER
    #> # TODO 2: call the three lectures' functions (see the header for the arguments). Keep the maps
    #> # signed: Grad-CAM's ReLU would throw away the evidence against the class.
    #> raise NotImplementedError("write explain: a dict of the three maps")
    ### END SOLUTION


def contrast(model: nn.Module, images: torch.Tensor, predicted, true) -> dict[str, torch.Tensor]:
    """{method: map(predicted) - map(true)}: positive where a pixel argues for the wrong class."""
    ### BEGIN SOLUTION
    for_predicted, for_true = explain(model, images, predicted), explain(model, images, true)
    return {name: for_predicted[name] - for_true[name] for name in METHODS}
    ### STARTER
    #> # TODO 3: explain both classes, subtract, one entry per method.
    #> raise NotImplementedError("write contrast: map(predicted) - map(true) for each method")
    ### END SOLUTION


# %% TODO 4: the questions ----------------------------------------------------------------------------


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per example, the cosine similarity of two maps (N, ...) -> (N,)."""
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def answer_questions(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """The computed answers; each key is one question."""
    ### BEGIN SOLUTION
    wrong, predicted = find_mistakes(model, images, labels)
    x, true = images[wrong], labels[wrong]  # (M, 1, 28, 28), (M,)
    with torch.no_grad():
        probabilities = model(x).softmax(1)  # (M, 10)
    confident = int(probabilities.gather(1, predicted[:, None]).argmax())  # position among the mistakes
    for_predicted, for_true = explain(model, x, predicted), explain(model, x, true)
    maps = {name: for_predicted[name] - for_true[name] for name in METHODS}  # (M, 1, 28, 28) each

    # Q3: completeness of integrated gradients for the margin, on the most confident mistake.
    one = slice(confident, confident + 1)
    with torch.no_grad():
        logits_x, logits_black = model(x[one]), model(torch.zeros_like(x[one]))
    p, t = int(predicted[confident]), int(true[confident])
    margin_change = float((logits_x[0, p] - logits_x[0, t]) - (logits_black[0, p] - logits_black[0, t]))

    # Q4: how differently does each method see the two classes? 1 - mean cosine of the two maps.
    difference = {name: float(1 - cosine(for_predicted[name], for_true[name]).mean()) for name in METHODS}

    # Q5: where is the evidence for the wrong class? The share of the positive contrast on ink (x > 0).
    on_ink = x > 0  # (M, 1, 28, 28)
    share = {name: float((maps[name].clamp(min=0) * on_ink).sum() / maps[name].clamp(min=0).sum())
             for name in METHODS}
    return {
        "n_mistakes": len(wrong),  # Q1
        "most_confident_mistake": int(wrong[confident]),  # Q2: its index into `images`
        "ig_contrast_sum": float(maps["integrated_gradients"][confident].sum()),  # Q3, beside ...
        "margin_change": margin_change,  # ... (S_p - S_t)(x) - (S_p - S_t)(black)
        "most_class_discriminative": max(difference, key=difference.get),  # Q4
        "share_on_ink": share,  # Q5
    }
    ### STARTER
    #> # TODO 4: compute each answer with your functions above; return the dict with these keys.
    #> #   "n_mistakes"                 Q1  how many digits the model gets wrong (an int)
    #> #   "most_confident_mistake"     Q2  the index into `images` of the mistake whose predicted class
    #> #                                    has the highest softmax probability
    #> #   "ig_contrast_sum"            Q3  for that digit, the sum of the integrated-gradients contrast map ...
    #> #   "margin_change"                  ... and (S_p - S_t)(x) - (S_p - S_t)(black image), p predicted, t true:
    #> #                                    completeness says these two should nearly agree
    #> #   "most_class_discriminative"  Q4  the method (a name from METHODS) whose maps for the predicted and
    #> #                                    the true class differ most: the largest 1 - mean cosine(...) over
    #> #                                    the mistakes, with the cosine of two maps computed per digit
    #> #   "share_on_ink"               Q5  {method: the share of the positive part of its contrast map, summed
    #> #                                    over all the mistakes, that lies on ink (pixels with x > 0)}
    #> raise NotImplementedError("write answer_questions: the dict of computed answers")
    ### END SOLUTION


# %% TODO 5: in your own words ------------------------------------------------------------------------

### BEGIN SOLUTION
WRITTEN = {
    "what_argues_for_the_wrong_class": (
        "Most mistakes are 2s read as 8s, 3s or 7s. Where the contrast is positive on the stroke, it marks "
        "the parts the wrong digit also has: the closed lower loop of a looped 2, which an 8 has too, or "
        "a long flat stroke a 7 could end with. The gradient also marks empty background where more ink "
        "would complete the wrong digit: evidence by absence, which integrated gradients cannot show."),
    "what_each_method_shows": (
        "The signed gradient is speckled and spread over the background: it is local sensitivity, not use. "
        "Integrated gradients from a black image is zero wherever x is zero, so all of its wrong-class "
        "evidence is on ink (share_on_ink is exactly 1) and it adds up to the change in the margin, up to "
        "the step count's error. Grad-CAM is smooth and coarse (its last conv map is 7x7) and, signed, "
        "mostly favours the true class even where the network chose the wrong one: its map is not the logit."),
### STARTER
#> WRITTEN = {  # TODO 5: a few sentences each, after looking at the figure this file makes
#>     "what_argues_for_the_wrong_class": "",
#>     "what_each_method_shows": "",
### END SOLUTION
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
