"""The explorer's page, in Gradio: controls built from the tables of networks and methods, maps from
`explorer.compute`. Nothing here computes a map; every number shown is what `compute` returned.

Offline by construction: analytics off before Gradio is imported, a theme of system fonts only (Gradio's
default theme fetches Google Fonts), no share link, the page bound to 127.0.0.1 unless asked. Uploads are
decoded into memory at once and their temporary file deleted; Gradio's temporary folder is a private one
under /dev/shm (memory) where the system has it, removed on exit.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import traceback
from pathlib import Path

from explorer import compute

compute.set_offline_environment()  # before gradio is imported: it reads these at import

import gradio as gr

from plumbing.errors import InputError
from plumbing.images import open_image

SOURCES = ("a photo of data/", "my upload", "a digit I draw")
PREDICTED = "the prediction"
QUEUE_NOTE = ("One computation runs at a time (the CPU is shared); other requests wait in the queue, and "
              "each page shows its place in it.")
DRAW_HINT = "Pick the brush at the pad's left and draw a digit with the mouse; the digit CNN reads it as you draw."
DEFAULT_METHODS = ("vanilla gradient", "Grad-CAM", "integrated gradients")


def private_temp_dir() -> Path:
    """A private folder for Gradio's uploads, in memory (/dev/shm) where the system has one."""
    parent = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="saliency-explorer-", dir=parent))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def theme() -> gr.themes.Base:
    """Gradio's plain theme with the system's fonts: its default asks Google Fonts for them."""
    return gr.themes.Base(font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
                          font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])


def lecture_link(row) -> str:
    return f"[{row.lecture}.py](/lecture/{row.lecture})"


def setting_component(name: str, key: str, setting, net_name: str | None):
    """A control for one setting of a method's row: its default, its range or its choices."""
    label = f"{key}: {setting.meaning}" if setting.meaning else key
    if key == "layer":
        return gr.Dropdown(choices=[], value=None, allow_custom_value=True, label=f"{key} (empty: the network's "
                           "usual layer)", elem_id=f"setting-{slug(name)}-{key}")
    if key == "baseline":
        return gr.Dropdown(choices=list(compute.BASELINES), value=compute.BASELINES[0], label=label,
                           elem_id=f"setting-{slug(name)}-{key}")
    if setting.choices and set(setting.choices) == {True, False}:
        return gr.Checkbox(value=bool(setting.default), label=label, elem_id=f"setting-{slug(name)}-{key}")
    if setting.choices:
        return gr.Dropdown(choices=list(setting.choices), value=setting.default, label=label,
                           elem_id=f"setting-{slug(name)}-{key}")
    whole = isinstance(setting.default, int) or key in ("n_samples", "steps")
    return gr.Number(value=setting.default, minimum=setting.low, maximum=setting.high, precision=0 if whole else None,
                     label=label + (" (empty: the default rule)" if setting.default is None else ""),
                     elem_id=f"setting-{slug(name)}-{key}")


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower())


def class_choices(top: list[tuple[int, str, float]]) -> list[str]:
    return [PREDICTED] + [f"{i}: {name} ({p:.0%})" for i, name, p in top]


def chosen_class(net, choice: str | None, by_name: str | None) -> int | None:
    """The class asked for: a name or index typed in wins, else the top-5 choice, else the prediction."""
    if by_name and by_name.strip():
        return compute.class_index(net, by_name)
    if not choice or choice == PREDICTED:
        return None
    return compute.class_index(net, choice.split(":", 1)[0])


def message(error: BaseException) -> str:
    if isinstance(error, InputError):
        return f"**Cannot do that:** {error}"
    traceback.print_exc()  # a bug: its traceback goes to the server's terminal, one line to the page
    return f"**Something went wrong** ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); " \
           "the explorer keeps running."


def numbers_table(results, measured, c: int, net) -> str:
    """The page's table: what compute.measure returned, three decimals."""
    lines = [f"Class explained: **{c}: {net.categories[c]}**. Deletion AUC: lower is better; insertion AUC: higher "
             f"is better; the smooth random map is the chance line (lecture 8).", "",
             "| method | lecture | seconds | deletion AUC | insertion AUC |", "| --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        row = compute.METHODS[name]
        if r.map is None:
            lines.append(f"| {name} | {lecture_link(row)} | | {r.error} | |")
            continue
        m = measured["curves"].get(name) if measured else None
        d, i = (f"{m.deletion:.3f}", f"{m.insertion:.3f}") if m else ("...", "...")
        lines.append(f"| {name} | {lecture_link(row)} | {r.seconds:.2f} | {d} | {i} |")
    if measured:
        ch = measured["chance"]
        lines.append(f"| smooth random map (chance) | [08_comparative_analysis.py](/lecture/08_comparative_analysis)"
                     f" | | {ch.deletion:.3f} | {ch.insertion:.3f} |")
        if measured.get("completeness"):
            delta, change = measured["completeness"]
            lines += ["", f"Integrated gradients' completeness error (lecture 4): sum IG - (S_c(x) - S_c(x')) = "
                      f"**{delta:.3f}** against S_c(x) - S_c(x') = {change:.3f}"]
    return "\n".join(lines)


def build(networks: list[str] | None = None) -> gr.Blocks:
    """The page. `networks`: the names offered (default: every available one)."""
    networks = networks or compute.available_networks()
    rows = compute.methods_for_page()
    photos = compute.sample_photos()
    setting_keys: list[tuple[str, str]] = []
    with gr.Blocks(title="Saliency explorer", analytics_enabled=False) as page:
        gr.Markdown("# Saliency explorer\nEvery method of the course on a photo or a digit you draw. Each method "
                    "is taught, whole, in its lecture: " +
                    ", ".join(f"{row.name} ({lecture_link(row)})" for row in rows) + f".\n\n{QUEUE_NOTE}")
        status = gr.Markdown("", elem_id="status")
        image_state = gr.State(None)  # the picture, decoded, in memory
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.Radio(list(SOURCES), value=SOURCES[0], label="picture", elem_id="source")
                photo = gr.Dropdown(photos, value=photos[0] if photos else None, label="photo of data/",
                                    elem_id="photo")
                upload = gr.File(label=f"upload an image (up to {compute.MAX_UPLOAD_BYTES // 2**20} MB)",
                                 type="filepath", elem_id="upload")
                sketch = gr.Sketchpad(label="draw a digit: pick the brush at the left (the digit CNN, network 'mnist')", type="numpy",
                                      image_mode="RGBA", canvas_size=(280, 280), elem_id="sketch",
                                      brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"))
                network = gr.Dropdown(networks, value=networks[0] if networks else None, label="network",
                                      elem_id="network")
                picture = gr.Image(label="what the network sees", interactive=False, height=224, elem_id="picture")
                prediction = gr.Markdown("", elem_id="prediction")
            with gr.Column(scale=1):
                methods = gr.CheckboxGroup([row.name for row in rows], value=list(DEFAULT_METHODS), label="methods",
                                           elem_id="methods")
                klass = gr.Dropdown([PREDICTED], value=PREDICTED, label="class: one of the top 5",
                                    elem_id="class")
                by_name = gr.Textbox(label="or a class by name or index", placeholder="e.g. tabby, 285",
                                     elem_id="class-name")
                stage = gr.Dropdown(["trained"], value="trained", elem_id="weights",
                                    label="weights: trained, or randomised from the top down to a layer "
                                          "(lecture 8's sanity check)")
                overlay = gr.Checkbox(value=True, label="maps over the picture", elem_id="overlay")
                steps = gr.Number(value=compute.CURVE_STEPS, minimum=2, maximum=200, precision=0,
                                  label="deletion and insertion steps", elem_id="steps")
                top5 = gr.Checkbox(value=False, elem_id="top5",
                                   label="also the top 5 classes' gradients (one forward, one batched backward)")
                setting_inputs = []
                layer_inputs = []
                for row in rows:
                    settings = compute.page_settings(row)
                    if not settings:
                        continue
                    with gr.Accordion(f"{row.name} settings", open=False):
                        for key, setting in settings.items():
                            component = setting_component(row.name, key, setting, None)
                            setting_inputs.append(component)
                            setting_keys.append((row.name, key))
                            if key == "layer":
                                layer_inputs.append(component)
                go = gr.Button("Explain", variant="primary", elem_id="explain")
        gr.Markdown("Every map is divided by its own 99th percentile of |value| and drawn on one scale: "
                    "**inferno** for magnitudes (0 to 1), **red-white-blue** for signed maps (-1 to 1).")
        with gr.Row():
            gr.Image(compute.colour_bar(False), label="magnitudes: 0 to 1", height=40, interactive=False,
                     container=False)
            gr.Image(compute.colour_bar(True), label="signed: -1 (blue) to 1 (red)", height=40, interactive=False,
                     container=False)
        maps = gr.Gallery(label="maps", columns=4, height="auto", object_fit="contain", elem_id="maps")
        numbers = gr.Markdown("", elem_id="numbers")
        classes_gallery = gr.Gallery(label="top 5 classes' gradients", columns=5, height="auto",
                                     object_fit="contain", elem_id="top5-maps", visible=True)

        def current_picture(src, photo_name, upload_state, drawing):
            if src == SOURCES[0]:
                if not photo_name:
                    raise InputError("choose a photo")
                return open_image(compute.DATA_DIR / photo_name)
            if src == SOURCES[1]:
                if upload_state is None:
                    raise InputError("upload an image first")
                return upload_state
            return compute.drawing_to_image(drawing.get("composite") if isinstance(drawing, dict) else drawing)

        def on_upload(path):
            """Decode the upload into memory and delete its temporary file at once."""
            if not path:
                return None, ""
            try:
                image = compute.open_upload(path)
                return image, ""
            except Exception as error:  # noqa: BLE001 - shown in the page, the server goes on
                return None, message(error)
            finally:
                try:
                    os.remove(path)
                except OSError:
                    pass

        def on_picture(src, photo_name, upload_state, drawing, net_name):
            """Show what the network sees and its top 5; update the class and weights choices."""
            if src == SOURCES[1] and upload_state is None:  # nothing (readable) uploaded: keep the page as it is
                return tuple(gr.update() for _ in picture_outputs)
            if src == SOURCES[2]:
                try:
                    compute.drawing_to_image(drawing.get("composite") if isinstance(drawing, dict) else drawing)
                except InputError:  # an empty pad: a hint, not an error
                    return (*[gr.update()] * 4, DRAW_HINT, *[gr.update()] * (len(picture_outputs) - 5))
            try:
                if src == SOURCES[2] and net_name != "mnist" and "mnist" in networks:
                    net_name = "mnist"  # a drawn digit is for the digit CNN
                net = compute.load_network(net_name)
                x = compute.to_input(net, current_picture(src, photo_name, upload_state, drawing))
                top = compute.top_classes(net, x)
                text = "Top 5: " + "; ".join(f"{i}: {name} ({p:.1%})" for i, name, p in top)
                layers = [net.cam_layer] + [n for n in reversed(net.conv_layers) if n != net.cam_layer]
                return (compute.picture_image(net, x), text, gr.update(choices=class_choices(top), value=PREDICTED),
                        gr.update(choices=["trained"] + net.stages(), value="trained"), "",
                        gr.update(value=net_name), *[gr.update(choices=layers, value=None) for _ in layer_inputs])
            except Exception as error:  # noqa: BLE001
                return (None, "", gr.update(choices=[PREDICTED], value=PREDICTED), gr.update(), message(error),
                        gr.update(), *[gr.update() for _ in layer_inputs])

        def on_explain(src, photo_name, upload_state, drawing, net_name, ticked, chosen, name_text, weights, over,
                       n_steps, want_top5, *values, progress=gr.Progress()):
            try:
                net = compute.load_network(net_name)
                x = compute.to_input(net, current_picture(src, photo_name, upload_state, drawing))
                target = chosen_class(net, chosen, name_text)
                stage_name = None if weights in (None, "trained") else weights
                asked = {m: {} for m in (ticked or [])}
                for (method, key), value in zip(setting_keys, values):
                    if method in asked and not (value is None and key not in ("baseline",)):
                        asked[method][key] = value
                if not asked:
                    raise InputError("tick at least one method")
                model = net.weights(stage_name)
                c = compute.explained_class(net, model, x, target)
                results = compute.explain(net, x, c, asked, stage_name,
                                          progress=lambda f, d: progress(f, desc=d))
                picture_ = compute.to_picture(net, x) if over else None
                gallery = [(compute.render(compute.METHODS[n], r.map, picture_),
                            f"{n} ({r.seconds:.2f} s)") for n, r in results.items() if r.map is not None]
                top_gallery = []
                if want_top5:
                    top = compute.top_classes(net, x, model=model)
                    grads = compute.top_classes_gradients(model, x, [i for i, _, _ in top])
                    row = compute.METHODS["vanilla gradient"]
                    top_gallery = [(compute.render(row, g[None].abs(), picture_), f"{i}: {name} ({p:.0%})")
                                   for g, (i, name, p) in zip(grads, top)]
                yield gallery, numbers_table(results, None, c, net), "Maps done; measuring deletion and insertion...", \
                    top_gallery
                measured = compute.measure(net, x, c, results, stage_name, int(n_steps or compute.CURVE_STEPS),
                                           progress=lambda f, d: progress(f, desc=d))
                yield gallery, numbers_table(results, measured, c, net), "Done.", top_gallery
            except Exception as error:  # noqa: BLE001 - a message in the page, never a dead server
                yield [], "", message(error), []

        picture_inputs = [source, photo, image_state, sketch, network]
        picture_outputs = [picture, prediction, klass, stage, status, network, *layer_inputs]
        upload.upload(on_upload, upload, [image_state, status]).then(
            lambda *a: on_picture(SOURCES[1], *a[1:]), picture_inputs, picture_outputs)
        upload.upload(lambda: gr.update(value=SOURCES[1]), None, source, queue=False)
        for trigger in (source.change, photo.change, network.change, page.load):
            trigger(on_picture, picture_inputs, picture_outputs)
        sketch.change(lambda *a: on_picture(SOURCES[2], *a[1:]), picture_inputs, picture_outputs)
        go.click(on_explain, [source, photo, image_state, sketch, network, methods, klass, by_name, stage, overlay,
                               steps, top5, *setting_inputs], [maps, numbers, status, classes_gallery],
                 concurrency_limit=1, concurrency_id="compute")
    return page


def start(host: str = "127.0.0.1", port: int | None = None, open_browser: bool = False,
          networks: list[str] | None = None, quiet: bool = False, inline: bool | None = None) -> gr.Blocks:
    """Build the page and start serving it in the background; returns the running page.

    In Jupyter or Colab, `explorer.app.start()` in a cell shows the page inline (Gradio's own rule);
    `.close()` stops it. `serve` is the command line's: the same, then it waits for Ctrl-C.
    """
    from fastapi.responses import PlainTextResponse

    os.environ.setdefault("GRADIO_TEMP_DIR", str(private_temp_dir()))
    page = build(networks)
    page.queue(default_concurrency_limit=1, max_size=32)
    try:
        page.launch(server_name=host, server_port=port, inbrowser=open_browser, share=False, quiet=quiet,
                    show_error=False, max_file_size=f"{compute.MAX_UPLOAD_BYTES // 2**20}mb", theme=theme(),
                    footer_links=[], ssr_mode=False, prevent_thread_lock=True, inline=inline)
    except OSError as error:  # the port is taken, or the address is not this computer's
        where = f"{host}:{port}" if port else host
        raise InputError(f"cannot serve on {where} ({str(error).splitlines()[0]}); try another --port or --host") \
            from None
    add_lecture_route(page.app, PlainTextResponse)
    return page


def serve(host: str = "127.0.0.1", port: int | None = None, open_browser: bool = True,
          networks: list[str] | None = None, quiet: bool = False) -> None:
    """Start the page and wait until Ctrl-C."""
    start(host, port, open_browser, networks, quiet, inline=False).block_thread()


def add_lecture_route(app, response) -> None:
    """/lecture/NN_name: a lecture's source as plain text, so each method's link opens its lecture."""
    @app.get("/lecture/{name}")
    def lecture_file(name: str):
        try:
            return response(compute.lecture_source(name))
        except InputError as error:
            return response(str(error), status_code=404)
    # a route added after launch goes behind Gradio's catch-all routes: move it to the front
    app.router.routes.insert(0, app.router.routes.pop())
