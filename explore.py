"""The classroom explorer: every method of the course on a photo or a digit drawn with the mouse, in a web page.

    pip install -r requirements-explorer.txt
    python explore.py                  # opens http://127.0.0.1:7860 in the browser
    python explore.py --port 8000 --no-browser
    python explore.py --host 0.0.0.0   # serve the room's network (anyone on it can use the page)

Works offline: the networks are EfficientNet-Lite0 (weights in its package, when installed), the digit
CNN shipped in data/, and torchvision's whose weights are already cached. See docs/explorer.md.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from plumbing.errors import InputError, command_line


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1 to 65535)")
    return port


def thread_count(text: str) -> int:
    try:
        threads = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if threads < 1:
        raise argparse.ArgumentTypeError(f"{threads}: at least 1 thread")
    return threads


class OneLineParser(argparse.ArgumentParser):
    def error(self, text: str):  # argparse prints the whole usage first: one line is enough
        print(f"error: {text} (python explore.py --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=port_number, default=None,
                        help="the port to serve on (default: 7860, or the next free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to bind (default 127.0.0.1: this computer only; 0.0.0.0: the room's network)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument("--threads", type=thread_count, default=1,
                        help="torch's threads for a computation (default 1: the page runs one computation at a "
                             "time, and on a busy machine two threads fighting for cores ran 10-20x slower than one)")
    return parser.parse_args(argv)


@command_line
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_arguments(argv)
    try:
        from explorer import app
    except ModuleNotFoundError as error:
        raise InputError(f"the explorer needs {error.name}: pip install -r requirements-explorer.txt") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: serving on {args.host}: anyone who can reach this computer can use the page", file=sys.stderr)
    import torch

    torch.set_num_threads(args.threads)
    app.serve(args.host, args.port, open_browser=not args.no_browser)


if __name__ == "__main__":
    main()
