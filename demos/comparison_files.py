"""Lecture 8's comparison, part 3: the verdicts and the files they are written to.

Every row of `08_method_guide_{track}.csv` is computed from the rows of `08_measurements_{track}.csv`
by the lecture's own functions (the exact signed-rank test, Holm's correction, the verdict rule),
reached through `run.lecture`; the Markdown guide says only what those rows say.
"""
from __future__ import annotations

import csv
import math

import numpy as np

import utils
from demos.comparison_run import Run, chance_lines, direction_of, plural, report_dropped
from plumbing.cli import check_out_dir
from plumbing.methods import compared

COLUMNS = ["method", "measure", "direction", "median", "versus", "n", "p_value", "p_holm", "effect", "verdict"]


# %% The verdicts -------------------------------------------------------------------------------


def measured(run: Run) -> dict[tuple[str, str], dict[str, float]]:
    """(method, measure) -> {input: value}, from the measurements' rows."""
    values: dict = {}
    for title, method, measure, v in run.rows:
        values.setdefault((method, measure), {})[title] = v
    return values


def guide(run: Run) -> list[dict]:
    """One row per method, measure and chance line: the exact test on the pairs, Holm over every row
    that was tested, and the verdict."""
    lecture, values, rows = run.lecture, measured(run), []
    for (method, measure), mine in values.items():
        if method.startswith("chance:"):
            continue
        direction = direction_of(measure)
        for versus in chance_lines(run.track, measure):
            chance = values.get((versus, measure), {})
            both = [t for t in mine if t in chance]
            p, effect, nonzero = lecture.signed_rank_test([mine[t] - chance[t] for t in both])
            uninformative = bool(chance) and lecture.is_uninformative(
                measure, direction, float(np.median(list(chance.values()))))
            tested = not uninformative and nonzero >= lecture.MIN_NONZERO
            rows.append({"method": method, "measure": measure, "direction": direction,
                         "median": float(np.median(list(mine.values()))), "versus": versus, "n": len(both),
                         "p_value": p if tested else math.nan, "effect": effect if tested else math.nan,
                         "nonzero": nonzero, "uninformative": uninformative})
    for row, p_holm in zip(rows, lecture.holm([r["p_value"] for r in rows])):
        row["p_holm"] = float(p_holm)
        row["verdict"] = lecture.verdict(row["uninformative"], row["nonzero"], row["p_holm"], row["effect"],
                                         row["direction"])
    return rows


def overall_verdicts(run: Run, rows: list[dict]) -> dict[tuple[str, str], str]:
    """(method, measure) -> the least favourable verdict over its chance lines."""
    found: dict = {}
    for r in rows:
        found.setdefault((r["method"], r["measure"]), []).append(r["verdict"])
    return {k: run.lecture.overall(v) for k, v in found.items()}


# %% The files --------------------------------------------------------------------------------


def number(value: float, digits: int = 9) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}g}"


def write_files(run: Run, rows: list[dict]) -> str:
    """08_measurements_{track}.csv, 08_method_guide_{track}.csv and the Markdown guide; returns the Markdown."""
    out, track = check_out_dir(run.args.out_dir), run.track
    dropped = report_dropped(run)
    try:
        with open(out / f"08_measurements_{track}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["input", "method", "measure", "value"])
            writer.writerows((t, m, k, repr(v)) for t, m, k, v in run.rows)  # repr: every digit, exact
        with open(out / f"08_method_guide_{track}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for r in rows:  # at least 7 significant digits; empty where no test was made
                writer.writerow({**r, "median": number(r["median"]), "p_value": number(r["p_value"]),
                                 "p_holm": number(r["p_holm"]), "effect": number(r["effect"])})
        markdown = guide_markdown(run, rows, dropped)
        (out / f"08_method_guide_{track}.md").write_text(markdown)
    except OSError as error:
        raise utils.InputError(f"cannot write the method guide to {out}: {error.strerror or error}") from None
    print("\n" + markdown)
    print(f"saved {out / f'08_measurements_{track}.csv'}, {out / f'08_method_guide_{track}.csv'} and .md")
    return markdown


WORDS = {"better": "better than every chance line on", "worse": "worse than a chance line on",
         "no difference": "no different from a chance line on",
         "uninformative": "uninformative (a chance line already at the best value) on",
         "too few inputs": "untested (fewer than 6 non-zero differences) on"}


def guide_markdown(run: Run, rows: list[dict], dropped: list[str]) -> str:
    """The guide's words, each generated from rows of the guide CSV."""
    lecture, tested = run.lecture, [r for r in rows if not math.isnan(r["p_value"])]
    lines = [f"# Method guide: {run.demo.network}, {plural(run.x.shape[0])}", "",
             f"Each row of 08_method_guide_{run.track}.csv tests a method's per-input values against one chance "
             "line: an exact two-sided signed-rank test (ties by mid-ranks), then Holm's correction over the "
             f"{plural(len(tested), 'tested row')} of the file; `better` or `worse` at p_holm < {lecture.ALPHA}. "
             "A method is `better` on a measure only if it beats every chance line of that measure; the words "
             "below give, per measure, its least favourable row."]
    if not tested:
        lines += ["", "**No row of this run was tested**: every verdict is 'uninformative' or 'too few inputs', "
                      "so its numbers show the machinery, not the methods."]
    lines += ["", "## What this run measured", ""]
    verdicts = overall_verdicts(run, rows)
    for method in dict.fromkeys(r["method"] for r in rows):
        words: dict = {}
        for (m, measure), v in verdicts.items():
            if m == method:
                words.setdefault(v, []).append(measure)
        said = [f"{WORDS[v]} {', '.join(words[v])}" for v in WORDS if v in words]
        lines.append(f"- **{method}**: " + "; ".join(said) + ".")
    lines += ["", "Medians are in the CSV; they are no ranking: no pairwise test between methods was made, so "
                  "this guide orders no methods.", "", "## Left out, and why", ""]
    lines += [f"- {line}" for line in dropped] or ["- nothing: every input informs every measure"]
    fails = [m for (m, k), v in verdicts.items() if k == "abs. rank corr. after randomisation" and v == "worse"]
    lines += ["", "## Sanity check", "",
              "- Still more correlated with the original map, once every layer is random, than two random maps "
              "are with each other ('worse'): " + (", ".join(fails) or "none") + "."]
    lines += ["", "## The literature's view, and what this run says", "",
              "| method | the literature says | tested by | verdict that would agree | this run | agreement |",
              "| --- | --- | --- | --- | --- | --- |"]
    for method, (claim, measure, expected) in ((row.name, row.claim) for row in compared() if row.claim):
        found = [v for (m, k), v in verdicts.items() if m == method and (k == measure or
                                                                          k.startswith(measure + " (n="))]
        got = lecture.overall(found) if found else "not measured"
        agree = ("not tested by this run" if got in ("too few inputs", "uninformative", "not measured") else
                 "agrees" if got == expected else "disagrees")
        lines.append(f"| {method} | {claim} | {measure}{' (every n)' if measure == 'sensitivity-n' else ''} "
                     f"| {expected} | {got} | {agree} |")
    return "\n".join(lines) + "\n"
