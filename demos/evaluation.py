"""Lecture 8's machinery: nine methods over many inputs, every measure, the verdicts, the files, the figures.

The lesson (each measure's formula and function, the chance lines, the exact test, Holm's correction
and the verdict rule) is in 08_comparative_analysis.py; read it first. This package runs it, in four
rooms, each importing only the ones before it:

    comparison_run       the settings, the inputs, every method once, the rows and what was left out
    comparison_measures  every measure over every input, beside its chance lines
    comparison_files     the guide's rows (the lecture's test, Holm, verdict) and the CSV / Markdown files
    comparison_figures   the figures, from what was recorded

The lecture hands itself over (`Run.lecture`); nothing here imports or loads a lecture.
"""
from __future__ import annotations

from demos import comparison_figures as figures
from demos import comparison_measures as measures
from demos.comparison_files import guide, write_files
from demos.comparison_run import (DIGIT_RUN, PHOTO_RUN, QUICK_RUN, Run, explain_all,  # noqa: F401
                                  load_objects, methods, parse_arguments, prepare, read_annotations)
from utils import save_figure


def compare(run: Run, maps: dict) -> list[dict]:
    """Every measure on every input, the verdicts, the guide and the figures, in the lecture's order."""
    names, out, track = list(maps), run.args.out_dir, run.track
    measures.show_shapley(run, maps["SHAP"])
    save_figure(figures.plot_side_by_side(run, maps), out, f"08_side_by_side_{track}.png")
    curves = measures.measure_curves(run, maps)
    save_figure(figures.plot_curves(run, curves, names), out, f"08_deletion_insertion_{track}.png")
    chance = measures.plausibility_maps(run)
    have = measures.measure_masks(run, maps, chance)
    if have:
        figure = figures.plot_pointing(run, maps, have[0], measures.pointing_tolerance(run), chance)
        save_figure(figure, out, f"08_pointing_game_{track}.png")
    measures.measure_human(run, maps, chance)
    sensitivity = measures.measure_sensitivity_n(run, maps)
    save_figure(figures.plot_sensitivity(run, sensitivity, names), out, f"08_sensitivity_n_{track}.png")
    measures.measure_stability(run, maps)
    save_figure(figures.plot_stability(run, names), out, f"08_stability_{track}.png")
    sanity = measures.measure_sanity(run)
    save_figure(figures.plot_sanity(run, sanity, names), out, f"08_sanity_check_{track}.png")
    if track == "mnist" and run.labels:
        figures.right_and_wrong(run)
    rows = guide(run)
    write_files(run, rows)
    return rows
