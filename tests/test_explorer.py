"""The explorer's compute functions, called directly: the same maps and numbers as the lectures' functions,
bad input as one line, one computation at a time, and a page that asks nothing of the internet.

Small networks only (the digit CNN, a random TinyCNN); the page's tests build it in-process (no socket).
"""
from __future__ import annotations

import importlib.util
import io
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, lecture
from helpers import png_header_only, tiny_cnn
from PIL import Image

from explorer import compute
from plumbing.errors import InputError
from plumbing.methods import METHODS

QUICK = {name: dict(row.quick) for name, row in METHODS.items()}  # the rows' cheapest settings


@pytest.fixture(scope="module")
def digit():
    """The digit CNN and one shipped digit, as the page would feed them."""
    net = compute.load_network("mnist")
    path = sorted((ROOT / "data" / "digits").glob("*.png"))[0]
    return net, compute.to_input(net, compute.open_upload(path))


def lecture_call(row, net, x, c, given):
    """What the lecture's own function gives with the same settings the explorer passes."""
    return row.load()(net.model, x, c, **compute.method_kwargs(row, net, x, given))


def test_the_page_lists_every_method_of_the_table_and_each_links_to_its_lecture():
    assert [row.name for row in compute.methods_for_page()] == list(METHODS)
    for row in compute.methods_for_page():
        assert compute.lecture_file(row).is_file()
        assert compute.lecture_source(row.lecture).startswith('"""')
    with pytest.raises(InputError):
        compute.lecture_source("../utils")


def test_offline_networks_are_offered():
    names = compute.available_networks()
    assert "mnist" in names
    if importlib.util.find_spec("efficientnet_lite_pytorch"):
        assert names[0] == "efficientnet_lite0"


@pytest.mark.parametrize("name", list(METHODS))
def test_each_map_equals_its_lectures_function(digit, name):
    net, x = digit
    c = 3
    results = compute.explain(net, x, c, {name: QUICK[name]})
    ours = results[name]
    assert ours.error is None, ours.error
    torch.testing.assert_close(ours.map, lecture_call(METHODS[name], net, x, c, QUICK[name]), rtol=0, atol=0)


def test_settings_reach_the_method_and_are_checked(digit):
    net, x = digit
    given = {"n_samples": 3, "noise_level": 0.3, "squared": True}
    ours = compute.explain(net, x, 1, {"SmoothGrad": given})["SmoothGrad"].map
    torch.testing.assert_close(ours, lecture_call(METHODS["SmoothGrad"], net, x, 1, given), rtol=0, atol=0)
    black = compute.method_kwargs(METHODS["integrated gradients"], net, x, {"baseline": compute.BASELINES[1]})
    assert torch.equal(black["baseline"], torch.zeros_like(x))  # the digits' black is 0
    for bad in ({"noise_level": 7.0}, {"n_samples": 2.5}, {"squared": "yes"}, {"sigma": 1}):
        with pytest.raises(InputError):
            compute.explain(net, x, 1, {"SmoothGrad": bad})
    with pytest.raises(InputError, match="no method"):
        compute.explain(net, x, 1, {"XRAI": {}})


def test_a_method_that_cannot_explain_a_network_says_so_in_its_panel(digit):
    net, x = digit
    results = compute.explain(net, x, 0, {"Grad-CAM": {"layer": "no.such.layer"}, "vanilla gradient": {}})
    assert results["Grad-CAM"].map is None and "no.such.layer" in results["Grad-CAM"].error
    assert results["vanilla gradient"].map is not None


def test_numbers_equal_lecture_8_and_lecture_4(digit):
    net, x = digit
    c = 7
    given = {"integrated gradients": {"steps": 8}, "Grad-CAM": {}}
    results = compute.explain(net, x, c, given)
    measured = compute.measure(net, x, c, results, steps=6)
    eight, four = lecture("08_comparative_analysis"), lecture("04_integrated_gradients")
    for name, r in results.items():
        deletion = eight.area_under_curve(eight.deletion_curve(net.model, x, r.map, c, 6))
        insertion = eight.area_under_curve(eight.insertion_curve(net.model, x, r.map, c, 6))
        assert measured["curves"][name].deletion == float(deletion[0])
        assert measured["curves"][name].insertion == float(insertion[0])
    chance = eight.area_under_curve(eight.deletion_curve(net.model, x, compute.smooth_random_map(x), c, 6))
    assert measured["chance"].deletion == float(chance[0])
    delta = four.completeness_delta(net.model, x, results["integrated gradients"].map, None, c)
    assert measured["completeness"][0] == float(delta[0])


def test_top_classes_gradients_come_from_one_batched_backward_and_equal_lecture_1():
    one = lecture("01_vanilla_gradient_saliency")
    model = tiny_cnn()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        grads = compute.top_classes_gradients(model, x, [4, 0, 2])
    finally:
        handle.remove()
    assert len(calls) == 1  # one forward for all three classes
    for g, c in zip(grads, [4, 0, 2]):
        torch.testing.assert_close(g[None], one.vanilla_gradient(model, x, c, absolute=False), rtol=1e-5, atol=1e-7)


def test_randomised_weights_are_a_copy_and_lecture_8s_cascade(digit):
    net, x = digit
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    stages = net.stages()
    last = net.weights(stages[-1])
    assert last is not net.model
    assert all(torch.equal(before[k], v) for k, v in net.model.state_dict().items())
    eight = lecture("08_comparative_analysis")
    *_, (label, cascade) = eight.cascading_randomisation(net.model, eight.randomisation_stages(net.model), compute.SEED)
    assert label == stages[-1]
    assert all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), cascade.state_dict().values()))
    randomised = compute.explain(net, x, 2, {"vanilla gradient": {}}, stage=stages[-1])["vanilla gradient"].map
    assert not torch.equal(randomised, compute.explain(net, x, 2, {"vanilla gradient": {}})["vanilla gradient"].map)
    with pytest.raises(InputError, match="no randomisation stage"):
        net.weights("nonsense")


def test_display_follows_the_course_colours(digit):
    net, x = digit
    r = compute.explain(net, x, 0, {"vanilla gradient": {}, "gradient x input": {}})
    picture = compute.to_picture(net, x)
    for name in r:
        alone = compute.render(METHODS[name], r[name].map, None)
        over = compute.render(METHODS[name], r[name].map, picture)
        assert alone.shape == over.shape == (224, 224, 3) and alone.dtype == np.uint8 and alone.std() > 0
    signed = compute.display_values(METHODS["gradient x input"], r["gradient x input"].map)
    assert signed.min() < 0 <= signed.max() <= 1
    assert compute.display_values(METHODS["vanilla gradient"], r["vanilla gradient"].map).min() >= 0


# %% Bad input: one line, never a traceback -----------------------------------------------------------


def saved(tmp_path, name: str, image: Image.Image, **options) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def test_odd_but_valid_images_become_rgb_pictures(tmp_path, digit):
    net, _ = digit
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    cases = {"cmyk.jpg": rgb.convert("CMYK"),
             "sixteen.png": Image.fromarray((rng.integers(0, 65535, (40, 40))).astype(np.uint16)),
             "transparent.png": rgb.convert("RGBA")}
    for name, image in cases.items():
        picture = compute.open_upload(saved(tmp_path, name, image))
        assert picture.mode == "RGB" and picture.size == (40, 40)
        assert compute.to_input(net, picture).shape == (1, 1, 28, 28)


@pytest.mark.parametrize("case", ["not an image", "bomb", "one pixel", "over the limit", "empty", "truncated"])
def test_bad_uploads_are_one_line(tmp_path, case):
    path = tmp_path / "upload.png"
    limit = compute.MAX_UPLOAD_BYTES
    if case == "not an image":
        path.write_text("hello, I am a text file")
    elif case == "bomb":
        path.write_bytes(png_header_only(20_000, 20_000))
    elif case == "one pixel":
        Image.new("RGB", (1, 1)).save(path)
    elif case == "over the limit":
        Image.new("RGB", (64, 64)).save(path)
        limit = path.stat().st_size - 1
    elif case == "empty":
        path.write_bytes(b"")
    else:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[:60])
    with pytest.raises(InputError) as error:
        compute.open_upload(path, limit)
    text = str(error.value)
    assert "\n" not in text and str(tmp_path) not in text, text  # the temporary file's path is not shown


def test_unknown_class_names_and_blank_drawings_are_one_line(digit):
    net, _ = digit
    assert compute.class_index(net, "7") == 7 and compute.class_index(net, "") is None
    with pytest.raises(InputError, match="class 'banana'"):
        compute.class_index(net, "banana")
    with pytest.raises(InputError, match="out of range"):
        compute.class_index(net, "12")
    with pytest.raises(InputError, match="empty"):
        compute.drawing_to_image(np.zeros((50, 50, 4), dtype=np.uint8))
    stroke = np.zeros((50, 50, 4), dtype=np.uint8)  # a white stroke on a transparent pad
    stroke[10:40, 20:28] = 255
    on_white = np.full((50, 50, 4), 255, dtype=np.uint8)  # a black stroke on an opaque white pad
    on_white[10:40, 20:28, :3] = 0
    for drawing in (stroke, on_white):
        digit = compute.to_input(net, compute.drawing_to_image(drawing))
        assert digit[0, 0, 14, 13] > 0.5 and digit[0, 0, 2, 2] < 0.1  # light stroke on dark, as in MNIST


def test_ten_requests_at_once_take_turns_and_agree(digit):
    net, x = digit
    results, errors = [], []

    def ask():
        try:
            results.append(compute.explain(net, x, 5, {"vanilla gradient": {}, "Grad-CAM": {}}))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 10
    for r in results[1:]:
        assert torch.equal(r["Grad-CAM"].map, results[0]["Grad-CAM"].map)


def test_bad_flag_is_one_line_and_exit_2():
    for flags in (["--port", "http"], ["--port", "70000"], ["--threads", "0"], ["--colour"]):
        done = subprocess.run([sys.executable, str(ROOT / "explore.py"), *flags], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


# %% The page: built in-process (no socket), offline by construction ------------------------------------------


gradio_missing = importlib.util.find_spec("gradio") is None


@pytest.mark.skipif(gradio_missing, reason="gradio not installed (pip install -r requirements-explorer.txt)")
def test_the_served_page_asks_nothing_of_the_internet():
    from fastapi.testclient import TestClient
    from gradio.routes import App

    from explorer import app as explorer_app

    assert explorer_app.os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    page = explorer_app.build(["mnist"])
    page.queue(default_concurrency_limit=1, max_size=32)
    page.theme = explorer_app.theme()
    page.theme_css = page.theme._get_theme_css()
    client = TestClient(App.create_app(page))
    html = client.get("/").text
    loaded = re.findall(r'<(?:script|link|img|iframe)[^>]*(?:src|href)="([^"]+)"', html)
    assert loaded and all(not re.match(r"(https?:)?//", url) for url in loaded), loaded
    css = [client.get(url.lstrip(".")).text for url in loaded if url.endswith(".css")] + [page.theme_css]
    for text in css:
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", text) + re.findall(r"@import\s+['\"]?([^'\";]+)", text):
            assert url.startswith("data:") or not re.match(r"(https?:)?//", url), url
    assert "fonts.googleapis" not in html + "".join(css)
    # one computation at a time, in a queue the page shows
    explain = [fn for fn in page.fns.values() if fn.name == "on_explain"]
    assert explain and explain[0].concurrency_limit == 1
