"""Lecture 9's demo machinery: which network each part explains, printed tables and verdicts,
figure layout, and the wine table's two small models. The methods live in 09_advanced_techniques.py."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import utils
from demos import common
from plumbing.digit_networks import MNIST_CLASSES, MnistCNN
from plumbing.errors import WeightsUnavailable
from plumbing.networks import load_digit_vit

TABULAR_STEPS = 200  # full-batch Adam steps for the two wine models: well under a second
SAME = 1e-4  # two maps "agree to float32 precision" when they differ by less than this share of the largest
PERMUTATION_REPEATS = 30


# %% Which network each part explains -----------------------------------------------------------


def digit_demo(demo: common.Demo, model: nn.Module, count: int) -> common.Demo:
    """`count` held-out digits (data/digits) through `model` (the digit CNN or the digit ViT)."""
    x, labels, _ = common.load_digits(count)
    return common.Demo("mnist", "digit CNN" if isinstance(model, MnistCNN) else "digit ViT",
                      model.to(demo.device).eval(), x.to(demo.device), [f"digit {label}" for label in labels],
                      MNIST_CLASSES, demo.device)


def first(on: common.Demo, n: int) -> common.Demo:
    return dataclasses.replace(on, x=on.x[:n], names=on.names[:n])


def lrp_demo(demo: common.Demo, reason: str | None, count: int) -> common.Demo:
    """The demo's own network when LRP explains it, else the digit CNN (said in one line)."""
    if demo.track == "mnist":
        return digit_demo(demo, utils.load_mnist_cnn(), count)
    if reason is None:
        return demo
    print(f"LRP cannot explain {demo.model_name}: {reason}. LRP, DeepLIFT and the attack explain the "
          "digit CNN.")
    return digit_demo(demo, utils.load_mnist_cnn(), count)


def vit_demo(args, demo: common.Demo, photos: list[str], count: int) -> common.Demo:
    """ViT-B/16 on the photos (the demo's own, or loaded when not --quick), else the digit ViT."""
    if demo.model_name == "vit_b_16":
        return demo
    if demo.track == "imagenet" and not args.quick:
        try:
            model, categories, transform = utils.load_imagenet_model("vit_b_16")
        except WeightsUnavailable as error:
            print(f"\nNo pretrained vit_b_16 weights ({error}); attention rollout explains the digit ViT.")
        else:
            images, stems = utils.load_images([utils.DATA_DIR / f for f in photos[: len(demo.names)]])
            x = utils.preprocess(images, transform).to(demo.device)
            return common.Demo("imagenet", "vit_b_16", model.to(demo.device).eval(), x, stems, categories,
                              demo.device, tuple(transform.mean), tuple(transform.std))
    return digit_demo(demo, load_digit_vit(), count)


def without_shifts(model: nn.Module) -> nn.Module:
    """A float64 copy of `model` with every bias and every BatchNorm shift (mean, beta) set to 0."""
    bare = copy.deepcopy(model).double()
    with torch.no_grad():
        for m in bare.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return bare


def verdict(value: float, expected: float, word: str) -> str:
    gap = abs(value - expected) / max(abs(expected), 1e-12)
    return word if gap < 1e-6 else f"NOT {word} (off by {gap:.1e} of it)"


# %% Printed tables -------------------------------------------------------------------------------


def print_conservation(network: str, trace: list, total: float, logit: float, epsilon: float) -> None:
    """Where f_c(x) goes under LRP-eps: kept in the map, taken by biases (merged BatchNorm shifts
    among them), taken by eps; and whether the residual sums hand on what they receive."""
    print(f"\nConservation, LRP-eps (eps = {epsilon:g}) on {network}, first example: f_c(x) = {logit:.4f}")
    kinds: dict[str, dict[str, float]] = {}
    for t in trace:
        row = kinds.setdefault(t["kind"], {"layers": 0, "bias": 0.0, "eps": 0.0, "worst": 0.0})
        out, given, bias = float(t["out"][0]), float(t["in"][0]), float(t["bias"][0])
        row["layers"] += 1
        row["bias"] += bias
        row["eps"] += out - given - bias
        row["worst"] = max(row["worst"], abs(out - given) / max(abs(out), 1e-12))
    print(f"  {'layers':>22} {'how many':>8} {'biases take':>12} {'eps takes':>10} "
          f"{'largest |out - in| / |out|':>27}")
    for kind, row in kinds.items():
        print(f"  {kind:>22} {row['layers']:8d} {row['bias']:12.4f} {row['eps']:10.4f} {row['worst']:27.2e}")
    taken = sum(r["bias"] + r["eps"] for r in kinds.values())
    print(f"  sum of R over the input: {total:.4f} ({total / logit:.0%} of f_c(x)); biases and eps took {taken:.4f}; "
          f"together {total + taken:.4f}: {verdict(total + taken, logit, 'every share accounted for')}")
    if "conv+BatchNorm" in kinds:
        print(f"  Merging BatchNorm gives each conv a bias b' = (b - mean) gamma / sqrt(var + eps) + beta: those "
              f"biases take {kinds['conv+BatchNorm']['bias']:+.4f} of f_c(x).")
    if "sum" in kinds:
        worst = kinds["sum"]["worst"]
        print(f"  The residual rule has no bias: each of the {kinds['sum']['layers']} sums hands on what it receives "
              f"but for eps (at most {worst:.1e} of it).")


def print_relations(model: nn.Module, x: torch.Tensor, maps: dict[str, torch.Tensor]) -> None:
    """Ancona et al.'s (2018) equalities, checked on this network, and where the maps part."""
    has_relu6 = any(isinstance(m, nn.ReLU6) for m in model.modules())
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    hidden_shift = any(isinstance(m, nn.BatchNorm2d) or (m.bias is not None and bool(m.bias.any()))
                       for m in layers[:-1])
    print("  Ancona et al. (2018): through ReLUs and max pooling, LRP-0 is exactly gradient x input (biases or not);\n"
          "  DeepLIFT-rescale from a zero baseline is too when every hidden unit is 0 at the zero input (no bias or\n"
          "  BatchNorm shift before the last layer), and IG from 0 is when the network is positively homogeneous\n"
          f"  (the same condition). This network: ReLU6 units {'yes' if has_relu6 else 'no'}; hidden biases or "
          f"BatchNorm {'yes' if hidden_shift else 'no'}.")
    clamps = []
    handles = [m.register_forward_hook(lambda m, a, out: clamps.append(int((a[0] > 6).sum())))
               for m in model.modules() if isinstance(m, nn.ReLU6)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    if has_relu6:
        print(f"    ReLU6 units clamped at 6 on this batch: {sum(clamps)}" + (
            "; the gradient is 0 there, but LRP hands relevance through them (a ReLU, then a clamp), "
            "so there LRP-0 and gradient x input must part" if sum(clamps) else ""))
    reference = maps["gradient x input"]
    scale = float(reference.abs().max())
    for name in ("LRP-0", "DeepLIFT (zero)", "IG (zero)"):
        gap = float((maps[name] - reference).abs().max()) / scale
        print(f"    {name:>25} - gradient x input: {gap:.1e} of the map's largest value: "
              f"{'equal (float32)' if gap < SAME else 'they differ'}")
    dl = maps["DeepLIFT (zero)"]
    pairs = ", ".join(f"{name} {np.mean([utils.rank_correlation(dl[i], m[i]) for i in range(len(dl))]):.2f}"
                      for name, m in maps.items() if name != "DeepLIFT (zero)")
    print(f"    rank correlation with DeepLIFT's map, mean over the batch: {pairs}")


def print_attack(on, model, x, runs, valid, epsilon, k, steps, overlaps, others) -> None:
    """What the attack did over every random start: the box it stayed in, the labels, the top-k overlap
    against random signs of the same size and against chance, and the class probability."""
    low, high = (float(v.min()) for v in valid)
    x_adv = torch.cat([run[0] for run in runs])  # (starts * N, ...)
    x_random = torch.cat([run[1] for run in runs])
    with torch.no_grad():
        classes = model(x).argmax(1)
        p = model(x).softmax(1).gather(1, classes[:, None])[:, 0]  # (N,)
        tiled = classes.repeat(len(runs))  # (starts * N,)
        p_adv = model(x_adv).softmax(1).gather(1, tiled[:, None])[:, 0]
        p_random = model(x_random).softmax(1).gather(1, tiled[:, None])[:, 0]
        kept = int((model(x_adv).argmax(1) == tiled).sum())
        kept_random = int((model(x_random).argmax(1) == tiled).sum())
    attack = float(torch.stack([o[0] for o in overlaps]).mean())
    random = float(torch.stack([o[1] for o in overlaps]).mean())
    per_start = ", ".join(f"{float(o[0].mean()):.3f} / {float(o[1].mean()):.3f}" for o in overlaps)
    chance = k / (x.shape[-2] * x.shape[-1])  # k random pixels share k / pixels of the top k, on average
    x_all = x.repeat(len(runs), *[1] * (x.dim() - 1))
    print(f"\nThe top-k attack on {on.network} ({len(x)} inputs x {len(runs)} random starts, k = {k} pixels = "
          f"10%, epsilon = {epsilon:.4f} per element, {steps} steps):")
    print(f"  every iterate, start and random-sign image clipped to the inputs' valid range [{low:g}, {high:g}] "
          f"(what [0, 1] pixels become) and to |x_adv - x| <= epsilon: x_adv spans [{float(x_adv.min()):.3f}, "
          f"{float(x_adv.max()):.3f}], largest |x_adv - x| = {float((x_adv - x_all).abs().max()):.4f}")
    print(f"  labels kept: {kept}/{len(x_adv)} (random signs of the same size: {kept_random}/{len(x_random)})")
    print(f"  top-k overlap of |dS/dx| at x and after, mean: {attack:.3f} under the attack, {random:.3f} under "
          f"random signs, {chance:.3f} by chance (k / pixels); per start (attack / random): {per_start}")
    print(f"  the attack's overlap is {'below' if attack < 0.5 else 'NOT below'} 0.5, "
          f"{'at most' if attack <= random / 2 else 'MORE than'} half the random signs', and "
          f"{'below' if attack < chance else 'above'} chance: "
          + ("the old top k is avoided, not just shuffled" if attack < chance else
             "what is left of the old top k is no more than a random choice of k pixels would keep"))
    print(f"  class probability, median over inputs and starts: {float(p.median()):.2f} at x -> "
          f"{float(p_adv.median()):.2f} after the attack ({float(p_random.median()):.2f} after random signs; "
          f"lowest after the attack {float(p_adv.min()):.2f}): the label stays, the confidence need not")
    print("  other methods on the same inputs (first start; overlap under the attack / under random signs): "
          + "; ".join(f"{name} {a:.2f} / {r:.2f}" for name, (a, r) in others.items())
          + ". The attack aims at the gradient's map alone; these are not ranked (no test here).")


# %% Figures --------------------------------------------------------------------------------------


def plot_maps(images: np.ndarray, titles: list[str], maps: dict[str, torch.Tensor], title: str):
    """One example per group of panels: the input, then each signed map (red: for the class)."""
    fig, panels = utils.example_grid(len(images), 1 + len(maps), title=title)
    for axes, image, name, i in zip(panels, images, titles, range(len(images))):
        utils.show_image(axes[0], image, name)
        for ax, (label, m) in zip(axes[1:], maps.items()):
            utils.show_signed_map(ax, m[i: i + 1], label, bar=False)
    maps_axes = [ax for axes in panels for ax in axes[1:]]
    utils.shared_colorbar(fig, maps_axes, signed=True, label="sum over channels / 99th pct of |value|")
    return fig


def plot_attack(on, model, x, x_adv, maps, epsilon, k, summary: str = "", rows: int = 3):
    """Per example: x, x_adv, the change, and |dS/dx| at each, with the class probabilities;
    `summary`, a line under the title (the run's overlaps over every input and start)."""
    with torch.no_grad():
        p, p_adv = model(x).softmax(1), model(x_adv).softmax(1)
    classes = p.argmax(1)
    n = min(rows, len(x))
    fig, panels = utils.example_grid(n, 5, title=f"A top-k attack on the gradient map, {on.network} "
                                                  f"(epsilon = {epsilon:.3f}, k = {k} pixels)"
                                                  + (f"\n{summary}" if summary else ""))
    images, adv = on.display(x[:n]), on.display(x_adv[:n])
    change = (x_adv - x)[:n].abs().amax(1).cpu().numpy() / epsilon  # (n, H, W) in [0, 1]
    for i, axes in enumerate(panels):
        c = int(classes[i])
        name = utils.shorten(on.class_name(c), 14)
        utils.show_image(axes[0], images[i], f"x: p('{name}') = {float(p[i, c]):.2f}")
        utils.show_image(axes[1], adv[i], f"x_adv: p = {float(p_adv[i, c]):.2f}\nclass '{name}'"
                         if int(p_adv[i].argmax()) == c else "x_adv: CLASS CHANGED")
        utils.show_heatmap(axes[2], change[i], "|x_adv - x| / epsilon", label="fraction of epsilon")
        for ax, m, label in ((axes[3], maps[0], "|dS/dx| at x"), (axes[4], maps[1], "|dS/dx| at x_adv")):
            heat = m[i].abs().amax(0).cpu().numpy()
            utils.show_heatmap(ax, utils.scale_for_display(heat[None])[0], label, image=images[i])
    return fig


def plot_vit(images: np.ndarray, titles: list[str], columns: list[tuple[str, torch.Tensor]], network: str):
    """Per example: the input, then each patch-grid map upsampled over it (each / its maximum)."""
    fig, panels = utils.example_grid(len(images), 1 + len(columns),
                                     title=f"Where a Vision Transformer looks, {network}")
    size = images.shape[1:3]
    for i, axes in enumerate(panels):
        utils.show_image(axes[0], images[i], titles[i])
        for ax, (label, maps) in zip(axes[1:], columns):
            big = F.interpolate(maps[i: i + 1, None].float(), size=size, mode="bilinear",
                                align_corners=False)[0, 0]
            heat = utils.scale_for_display(big.cpu().numpy()[None], percentile=100.0)[0]
            utils.show_heatmap(ax, heat, label + ("\n(all zero)" if not heat.any() else ""), image=images[i],
                               bar=False)
    utils.shared_colorbar(fig, [ax for axes in panels for ax in axes[1:]], image=True,
                          label="each map / its maximum (opacity = strength)")
    return fig


def run_flat_digits(args, mlp: nn.Module, cnn: nn.Module, vanilla, ig) -> None:
    """The digit MLP (784 -> 128 -> 10) beside the digit CNN: gradient and IG on the same digits."""
    x, labels, _ = common.load_digits(3)
    flat = x.flatten(1)  # (N, 784): the MLP sees a list of numbers, not a picture
    maps = {"MLP: dS/dx": vanilla.vanilla_gradient(mlp, flat, labels, absolute=False).view_as(x),
            "MLP: IG": ig.integrated_gradients(mlp, flat, target=labels, baseline=0.0).view_as(x),
            "CNN: dS/dx": vanilla.vanilla_gradient(cnn, x, labels, absolute=False),
            "CNN: IG": ig.integrated_gradients(cnn, x, target=labels, baseline=0.0)}
    inked = x > 0.1
    share = {name: float((m.abs() * inked).sum() / m.abs().sum()) for name, m in maps.items()}
    print("\nThe digit MLP (784-128-10) and the digit CNN on the same digits: share of |map| on the ink "
          f"(which covers {float(inked.float().mean()):.0%} of the pixels): "
          + ", ".join(f"{name} {s:.0%}" for name, s in share.items()))
    utils.save_figure(plot_maps(utils.denormalize(x, (0.0,), (1.0,)), [f"digit {label}" for label in labels], maps,
                                "The same methods on an MLP over 784 flattened pixels, and on the CNN"),
                      args.out_dir, "09_flat_digits.png")


# %% The wine table -------------------------------------------------------------------------------


@dataclass
class Table:
    """A small tabular data set, standardised with the training part's mean and spread."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    features: list[str]
    classes: list[str]


def wine_table(seed: int) -> Table | None:
    """scikit-learn's wine data (178 wines, 13 measurements, 3 cultivars), or None without it."""
    try:
        from sklearn.datasets import load_wine
    except ImportError:
        return None
    data = load_wine()
    x, y = torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[: len(x) * 2 // 3], order[len(x) * 2 // 3:]
    x = (x - x[train].mean(0)) / x[train].std(0)  # 0 now means "the average wine": the baseline
    names = [n.replace("od280/od315_of_diluted_wines", "OD280/OD315").replace("_", " ")
             for n in data.feature_names]
    return Table(x[train], y[train], x[test], y[test], names, [f"cultivar {c}" for c in range(3)])


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> nn.Module:
    """Full-batch Adam on cross-entropy, the plainest training loop; the model in eval mode."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def tabular_models(table: Table, seed: int) -> dict[str, nn.Module]:
    """A logistic (softmax) regression and a small MLP, each trained in well under a second."""
    torch.manual_seed(seed)
    d, k = table.x_train.shape[1], len(table.classes)
    models = {"logistic regression": nn.Sequential(nn.Linear(d, k)),
              "MLP 13-32-3": nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, k))}
    for model in models.values():
        fit(model, table.x_train, table.y_train, TABULAR_STEPS, 0.02)
    return models


def run_one_wine(models, table: Table, ig, vanilla, out_dir) -> None:
    """Local attributions for one test wine: the linear model's exact w_c * x, the MLP's gradient and IG."""
    x = table.x_test[:1]
    logistic, mlp = models["logistic regression"], models["MLP 13-32-3"]
    c = int(logistic(x).argmax(1))
    w = logistic[0].weight[c].detach()  # (13,) the model's own coefficients for class c
    ig_logistic = ig.integrated_gradients(logistic, x, target=c, baseline=0.0, steps=8)[0]
    print(f"  A linear model from a zero baseline (the average wine): IG = w_c * x exactly, at any step count: "
          f"largest |IG - w_c * x| = {float((ig_logistic - w * x[0]).abs().max()):.1e}")
    ig_mlp = ig.integrated_gradients(mlp, x, target=c, baseline=0.0, steps=64)[0]
    grad_mlp = vanilla.vanilla_gradient(mlp, x, c, absolute=False)[0]
    panels = [("logistic regression", [("coefficient w_c", w.numpy()), ("IG = w_c * x", ig_logistic.numpy())]),
              ("MLP 13-32-3", [("gradient dS/dx", grad_mlp.numpy()), ("IG", ig_mlp.numpy())])]
    labels = [f"{name} (x = {v:+.1f} sd)" for name, v in zip(table.features, x[0].tolist())]
    title = f"Attributions per feature for one test wine, class '{table.classes[c]}' (baseline: the average wine)"
    utils.save_figure(plot_bars(labels, panels, title), out_dir, "09_tabular.png")


class Trained:
    """A trained torch classifier in scikit-learn's clothes (it asks for fit(); there is nothing to fit)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def fit(self, x, y):
        return self

    def predict(self, x) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.as_tensor(x, dtype=torch.float32)).argmax(1).numpy()


def all_wines(table: Table) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([table.x_train, table.x_test]), torch.cat([table.y_train, table.y_test])


def permutation_importance(model: nn.Module, table: Table, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's permutation importance of each feature over all the wines: the accuracy lost when
    that column is shuffled (mean and spread over the shuffles)."""
    from sklearn.inspection import permutation_importance as sklearn_permutation

    def score(estimator, x, y):
        return float((estimator.predict(x) == y).mean())

    x, y = all_wines(table)
    result = sklearn_permutation(Trained(model), x.numpy(), y.numpy(), scoring=score,
                                 n_repeats=PERMUTATION_REPEATS, random_state=seed)
    return result.importances_mean, result.importances_std


def print_global(model: nn.Module, table: Table, shap: np.ndarray, permutation: np.ndarray) -> None:
    """The two global rankings side by side, and the features on which they part, with a reason measured."""
    shap_rank = np.argsort(np.argsort(-shap))
    perm_rank = np.argsort(np.argsort(-permutation))
    corr = np.corrcoef(all_wines(table)[0].numpy(), rowvar=False)
    np.fill_diagonal(corr, 0.0)
    print(f"  Global importance of the MLP's features over all {len(all_wines(table)[0])} wines: mean |phi_j| "
          "(exact Shapley values of the true class's logit, 2^13 coalitions each) and permutation importance "
          f"(accuracy lost, {PERMUTATION_REPEATS} shuffles):")
    print(f"  {'feature':>22} {'mean |phi|':>10} {'rank':>4} {'permutation':>11} {'rank':>4} "
          f"{'strongest |corr| with':>32}")
    for j in np.argsort(shap_rank):
        partner = int(np.abs(corr[j]).argmax())
        print(f"  {table.features[j]:>22} {shap[j]:10.3f} {shap_rank[j] + 1:4d} {permutation[j]:11.3f} "
              f"{perm_rank[j] + 1:4d} {table.features[partner]:>25} {abs(corr[j, partner]):.2f}")
    rho = utils.rank_correlation(torch.tensor(shap), torch.tensor(permutation))
    used_unneeded = (permutation <= 0) & (shap >= 0.25 * shap.max())  # the logit moves, accuracy does not
    apart = [j for j in range(len(shap)) if abs(int(shap_rank[j]) - int(perm_rank[j])) >= 3 or used_unneeded[j]]
    print(f"  Spearman rank correlation of the two: {rho:.2f}.")
    if not apart:
        print("  No feature is 3 or more ranks apart, none used without costing accuracy: the two views agree.")
        return
    x, _ = all_wines(table)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    shuffle = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    print("  They part (3 ranks or more, or a clear mean |phi| where a shuffle costs no accuracy) on these; what "
          "each does to the predictions, measured:")
    for j in apart:
        partner = int(np.abs(corr[j]).argmax())
        flips = []
        for replaced in (torch.zeros(len(x)), x[shuffle, j]):  # the average wine's value; a shuffle
            changed = x.clone()
            changed[:, j] = replaced
            with torch.no_grad():
                flips.append(float((model(changed).argmax(1) != predicted).float().mean()))
        print(f"    {table.features[j]} (SHAP rank {shap_rank[j] + 1}, permutation rank {perm_rank[j] + 1}): set to the "
              f"average it changes {flips[0]:.0%} of the predictions, shuffled {flips[1]:.0%}; its closest partner "
              f"{table.features[partner]} has |r| = {abs(corr[j, partner]):.2f}")
    print("  SHAP adds up how far a feature moves the logit, whether or not the class changes; permutation counts "
          "only the changes of class, and a correlated partner can stand in for a shuffled feature.")


def plot_global(features: list[str], shap: np.ndarray, permutation: np.ndarray, spread: np.ndarray):
    import matplotlib.pyplot as plt

    order = np.argsort(-shap)
    fig, axes = plt.subplots(1, 2, figsize=(16, 9), sharey=True, layout="constrained")
    fig.suptitle("Global importance of the wine MLP's features: SHAP against permutation", fontsize=16)
    rows = np.arange(len(features))
    for ax, values, error, label in ((axes[0], shap, None, "mean |phi_j| over the wines (logit units)"),
                                     (axes[1], permutation, spread, "permutation importance (accuracy lost, "
                                                                    "+- one sd over the shuffles)")):
        ax.barh(rows, values[order], xerr=None if error is None else error[order],
                color="tab:blue" if error is None else "tab:orange")
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_xlabel(label, fontsize=12)
        ax.tick_params(labelsize=11)
    axes[0].set_yticks(rows, [features[j] for j in order])
    axes[0].invert_yaxis()
    return fig


def plot_bars(features: list[str], panels, title: str):
    """Horizontal grouped bars, one group per feature, one panel per model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(16, 9), sharey=True, layout="constrained",
                             squeeze=False)
    fig.suptitle(title, fontsize=14)
    rows = np.arange(len(features))
    for ax, (panel_title, bars) in zip(axes[0], panels):
        height = 0.8 / len(bars)
        for b, (label, values) in enumerate(bars):
            ax.barh(rows + (b - (len(bars) - 1) / 2) * height, values, height, label=label)
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_title(panel_title, fontsize=12)
        ax.set_xlabel("contribution to the class logit (or coefficient)", fontsize=11)
        ax.legend(fontsize=10, loc="lower right")
        ax.tick_params(labelsize=10)
    axes[0, 0].set_yticks(rows, features)
    axes[0, 0].invert_yaxis()
    return fig
