"""The human summary ``python -m tfdldl.evaluate`` prints: a few lines per kind of result."""

from __future__ import annotations

from typing import Any


def summary(results: dict[str, Any]) -> str:
    """Human lines: N, MAE, bias, ε-error, CS at a few θ, slices (age MAE per gender,
    group and categorical head's class), each categorical head's accuracy and confusion,
    age-group accuracy, interval coverage."""
    lines = [f"{results['split']}: N={results['count']}  MAE {results['mae']:.3f}  "
             f"bias {results['bias']:+.3f}  RMSE {results['rmse']:.3f}  "
             f"Pearson {results['pearson'] if results['pearson'] is None else round(results['pearson'], 4)}"]
    if results["epsilon_error"] is not None:
        lines.append(f"epsilon-error {results['epsilon_error']:.4f}")
    thetas = list(results["cs_at"].items())
    picks = [thetas[i] for i in (1, 3, 5, 10) if i < len(thetas)]
    lines.append("CS: " + "  ".join(f"@{theta} {100 * score:.1f}%" for theta, score in picks))
    for attribute, table in results.get("slices", {}).items():
        lines.append(f"by {attribute}: " + "  ".join(
            f"{group['name']} (n={group['count']}) MAE {group['mae']:.2f} bias "
            f"{group['bias']:+.2f} CS@{table['theta']:g} {100 * group['cs']:.0f}%"
            for group in table["groups"])
            + f"; largest MAE gap {table['largest_gap']['mae']:.2f} "
              f"({table['largest_gap']['worst']} vs {table['largest_gap']['best']})")
    for head in results.get("categorical_heads", ()):
        lines.extend(confusion_lines(head, results[f"{head}_accuracy"],
                                     results[f"{head}_confusion"]))
    lines.extend(age_group_lines(results.get("age_groups")))
    lines.extend(interval_lines(results.get("intervals")))
    if results.get("calibration"):
        fitted = results["calibration"]
        lines.append(f"calibrated: temperature {fitted['temperature']:.3f} fitted on "
                     f"{fitted['fitted_on']['split']} (NLL {fitted['nll']['before']:.3f} -> "
                     f"{fitted['nll']['after']:.3f}), stored in the model")
    return "\n".join(lines)


def confusion_lines(head: str, accuracy: float | None, confusion: dict[str, Any]) -> list[str]:
    """'gender accuracy 91.2% (...)' and the confusion matrix, one line per true class, of
    the categorical head ``head``."""
    known = sum(map(sum, confusion["counts"]))
    shown = "n/a" if accuracy is None else f"{100 * accuracy:.1f}%"
    names = confusion["class_names"]
    return ([f"{head} accuracy {shown} (n={known} known, {confusion['unknown']} unknown); "
             "rows true, columns predicted " + " / ".join(names)]
            + [f"  {name}: " + "  ".join(str(count) for count in row)
               for name, row in zip(names, confusion["counts"])])


def interval_lines(intervals: dict[str, Any] | None) -> list[str]:
    """'intervals: 90% holds 71.2% of true labels (mean width 30.1) ...' lines."""
    if not intervals:
        return []

    def line(kind: str) -> str:
        return "  ".join(f"{100 * float(mass):g}% holds {100 * cell['coverage']:.1f}% "
                         f"(width {cell['mean_width']:.1f})"
                         for mass, cell in intervals[kind].items())

    lines = [f"intervals, uncalibrated: {line('uncalibrated')}"]
    if intervals["temperature"] != 1.0:
        lines.append(f"intervals, temperature {intervals['temperature']:.3f}: "
                     f"{line('calibrated')}")
    return lines


def age_group_lines(groups: dict[str, Any] | None) -> list[str]:
    """The line 'age-group accuracy 41.0%, one-off 80.2%; per true group: 0-3 (n=12) 75%
    ...' (a group's share is its recall); [] when the results have no age groups."""
    if not groups:
        return []
    per_group = "  ".join(f"{group['name']} (n={group['count']}) "
                          + ("n/a" if group["accuracy"] is None
                             else f"{100 * group['accuracy']:.0f}%")
                          for group in groups["groups"])
    return [f"age-group accuracy {100 * groups['accuracy']:.1f}%, one-off "
            f"{100 * groups['one_off_accuracy']:.1f}%; per true group: {per_group}"]
