"""The course's plumbing: what the lectures need but do not teach.

    cli       the shared flags, one-line errors, the output folder check
    images    safe image decoding
    models    ImageNet networks and their weights (downloads, local files, EfficientNet-Lite0)
    networks  the course's own digit networks
    demo      the set-up every lecture's demo starts from
    paths     where the course's files are

`utils.py` re-exports what the lectures call, so a lecture only ever writes `utils.NAME`.
"""
import utils  # noqa: F401  utils re-exports this package: importing it first keeps one import order
