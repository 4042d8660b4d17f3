"""The explorer in a real browser: `python explore.py` in a subprocess on a free port, driven by headless
Chromium (Playwright's sync API with the system's browser, /usr/bin/chromium): a photo, two methods and a
class; the maps are images with content and the numbers are the compute function's; a broken upload is a
message in the page; the browser asks nothing of any host but the page's own.

conftest.py forbids sockets in the test process; this file lets loopback through, and nothing else.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT

CHROMIUM = os.environ.get("EXPLORER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = [name for name in ("gradio", "playwright") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(bool(MISSING) or not CHROMIUM, reason=(
    f"no {' or '.join(MISSING) or 'Chromium'}: pip install -r requirements-explorer.txt playwright and "
    "apt-get install chromium to run the explorer's browser test"))

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
PHOTO = "coffee.png"
METHODS_TICKED = ("vanilla gradient", "Grad-CAM")
STEPS = 5
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_connect, _getaddrinfo, _create_connection = socket.socket.connect, socket.getaddrinfo, socket.create_connection


@pytest.fixture
def loopback(monkeypatch, offline):
    """conftest's offline fixture, with loopback let through (the test talks to its own server)."""
    def connect(sock, address, *a, **k):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise OSError("network access is disabled in the tests")
        return _connect(sock, address, *a, **k)

    def getaddrinfo(host, *a, **k):
        if host not in LOOPBACK:
            raise OSError("network access is disabled in the tests")
        return _getaddrinfo(host, *a, **k)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, *a, **k: _create_connection(address, *a, **k)
                        if address[0] in LOOPBACK else connect(None, address))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python explore.py` on a free port, shared by this file's tests (one start-up, ~30 s on a busy machine).
    It polls with the socket functions saved before conftest's offline fixture could patch them."""
    folder = tmp_path_factory.mktemp("explorer_server")
    port = free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen([sys.executable, str(ROOT / "explore.py"), "--port", str(port), "--no-browser"],
                               stdout=log, stderr=subprocess.STDOUT, cwd=folder, env={**os.environ})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, (folder / "server.log").read_text()
            try:
                with _create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the explorer did not start within 240 s:\n" + (folder / "server.log").read_text())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def choose(page, elem_id: str, option: str) -> None:
    """Pick `option` in a Gradio dropdown."""
    page.click(f"#{elem_id} input")
    page.locator("[role=option]", has_text=option).first.click()


def image_has_content(page, img) -> float:
    """The standard deviation of an <img>'s pixels, read through a canvas (0: blank or not loaded)."""
    return page.evaluate("""img => { const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight; if (!c.width) return 0;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0, s2 = 0, n = 0;
        for (let i = 0; i < d.length; i += 4) { const v = (d[i] + d[i+1] + d[i+2]) / 3; s += v; s2 += v * v; n++; }
        const m = s / n; return Math.sqrt(Math.max(s2 / n - m * m, 0)); }""", img)


def expected_numbers(c: int) -> list[str]:
    """The compute function's numbers for the same request, as the page writes them."""
    from explorer import compute
    from plumbing.images import open_image

    net = compute.load_network(compute.available_networks()[0])
    x = compute.to_input(net, open_image(compute.DATA_DIR / PHOTO))
    results = compute.explain(net, x, c, {m: {} for m in METHODS_TICKED})
    measured = compute.measure(net, x, c, results, steps=STEPS)
    numbers = [f"{measured['curves'][m].deletion:.3f} | {measured['curves'][m].insertion:.3f}" for m in METHODS_TICKED]
    return numbers + [f"{measured['chance'].deletion:.3f} | {measured['chance'].insertion:.3f}"]


def test_a_teacher_explains_a_photo_in_the_browser(server, loopback, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1900})
            hosts = set()
            page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
            page.goto(server)
            page.wait_for_selector("#prediction >> text=Top 5", timeout=120_000)
            assert "One computation runs at a time" in page.inner_text("body")  # the page says it queues
            choose(page, "photo", PHOTO)
            page.wait_for_function("() => document.querySelector('#prediction').innerText.includes('Top 5') && "
                                   "!document.querySelector('#picture .pending')", timeout=60_000)
            for name in page.locator("#methods input[type=checkbox]").evaluate_all("bs => bs.map(b => b.name)"):
                page.locator(f"#methods input[name='{name}']").set_checked(name in METHODS_TICKED)
            page.fill("#steps input", str(STEPS))
            page.click("#class input")  # the top 5 of the photo: take the second likeliest class
            page.wait_for_selector("[role=option][aria-label^='0'], [role=option][aria-label*=': ']")
            labels = page.locator("[role=option]").evaluate_all("os => os.map(o => o.getAttribute('aria-label'))")
            second = [label for label in labels if re.match(r"\d+: ", label)][1]
            c = int(second.split(":")[0])
            page.click(f"[role=option][aria-label='{second}']")
            page.click("#explain")
            page.wait_for_selector("#status >> text=Done.", timeout=180_000)
            images = page.query_selector_all("#maps img")
            assert len(images) >= len(METHODS_TICKED)
            assert all(image_has_content(page, img) > 1.0 for img in images[:len(METHODS_TICKED)])
            table = page.inner_text("#numbers")
            assert f"{c}:" in table
            page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
            shown = re.findall(r"(\d\.\d{3})\s+(\d\.\d{3})\s*$", table, flags=re.MULTILINE)  # deletion, insertion per row
            assert [f"{d} | {i}" for d, i in shown] == expected_numbers(c), table

            broken = tmp_path / "broken.png"
            broken.write_text("not a picture")
            page.set_input_files("#upload input[type=file]", str(broken))
            page.wait_for_selector("#status >> text=Cannot do that", timeout=60_000)
            assert "not a readable image" in page.inner_text("#status")
            assert "Traceback" not in page.content()

            link = page.locator("a[href='/lecture/05_gradcam']").first  # each method links to its lecture
            assert page.request.get(server + link.get_attribute("href")).text().startswith('"""Part 5 of 9')
        finally:
            browser.close()
    assert hosts == {server.split("/")[2]}, f"the page asked other hosts: {hosts}"


def test_ten_requests_at_once_wait_in_the_queue_and_all_finish(server, loopback):
    """Ten clients ask at once (Gradio's own client, the page's API): each gets its maps, none an error."""
    from gradio_client import Client

    client = Client(server, verbose=False)
    jobs = [client.submit(src="a photo of data/", photo_name=PHOTO, drawing=None, net_name="mnist",
                          ticked=list(METHODS_TICKED), chosen="the prediction", name_text="", n_steps=3,
                          **{name: None for name in required_without_default(client)}, api_name="/on_explain")
            for _ in range(10)]
    outputs = [job.result(timeout=300) for job in jobs]
    assert [out[2] for out in outputs] == ["Done."] * 10
    aucs = [re.findall(r"\| (\d\.\d{3}) \| (\d\.\d{3}) \|", out[1]) for out in outputs]  # times differ, AUCs not
    assert len(aucs[0]) == len(METHODS_TICKED) + 1 and all(a == aucs[0] for a in aucs)
    assert all(len(out[0]) == len(METHODS_TICKED) for out in outputs)


def required_without_default(client) -> list[str]:
    """The page's inputs with no default in its API (a layer list, SHAP's samples), which the page sends
    as None when left empty."""
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/on_explain"]
    return [p["parameter_name"] for p in endpoint["parameters"]
            if not p.get("parameter_has_default") and p["parameter_name"] not in ("drawing", "name_text")]
