"""The ground floor: what the lectures need but do not teach. Nothing here imports the course above it.

    errors          a user's mistake as one line (InputError), and the words for a path in it
    paths           where the course's files are
    cli             the shared flags, each checked before any slow step
    images          safe image decoding
    weights         where pretrained weights come from (downloads, local files, a package)
    digit_networks  the course's own digit networks (their architectures)
    networks        every network the course explains, one row each (NETWORKS), and their loading
    lectures        the lectures found from their files, and load_lecture
    methods         every saliency method, one row each (METHODS)
    relevance       LRP's and DeepLIFT's walk through a network's layers (lecture 9)
    side_effects    what a method must leave untouched, observed (the tests and the grader)

`utils.py` (the floor above) re-exports the few names the lectures call, so a lecture writes `utils.NAME`.
"""
