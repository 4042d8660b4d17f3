"""The floor above utils.py: what the lectures' demos run on, not what they teach.

    common      the set-up every demo starts from: the shared flags turned into a model and a batch
    evaluation  lecture 8's machinery, in the lecture's order; it runs the four rooms below
    comparison_run, comparison_measures, comparison_files, comparison_figures
                the settings and inputs; the measures with their chance lines; the verdicts and
                files; the figures
    lecture9    lecture 9's demos: the real networks, the attack, the transformers, the wine tables

Imports run one way: a lecture imports this package, which imports utils.py and plumbing/,
never a lecture's demo or the lecture that runs it. The lectures call `demos.NAME` for the set-up.
"""
from demos.common import (CAT_CLASSES, ESPRESSO, Demo, add_layer_flag, check_cam_layer,  # noqa: F401
                          contrast_classes, demo_layer, demo_target, describe_predictions, digit_tensor,
                          load_digits, parse_target, print_what_photos_show, setup_demo)
