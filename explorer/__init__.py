"""The classroom explorer (issue 25): every method of the course on a photo or a drawn digit, in a web page.

The top floor: it imports demos/, utils.py and plumbing/, and loads the lectures' method functions
through the table of methods; nothing imports it. `compute.py` is what the page calls and what the
tests call directly; `app.py` is the Gradio page; `explore.py` at the root is the command line.
"""
