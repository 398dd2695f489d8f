"""Learning curves: every training run's metrics.csv (one row per held-out evaluation), its
picture, and the comparison of two runs against wall time (fastrnn's layers against
torch.nn's, say)."""
import csv
import math
import os

from .report import pyplot

FIELDS = ("step", "seconds", "loss", "metric", "value")


class MetricsLog:
    """metrics.csv beside the checkpoint: step, seconds of training so far (evaluations not
    counted, so runs that evaluate at different rates compare fairly), the mean training loss
    since the previous row, the held-out metric's name and its value. A resumed run keeps the
    rows up to its checkpoint's step and appends after them."""

    def __init__(self, path, resume_step=None):
        self.path = path
        rows = read_metrics(path) if resume_step is not None and os.path.exists(path) else []
        rows = [r for r in rows if r["step"] <= resume_step] if rows else []
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(FIELDS)
            for r in rows:
                writer.writerow([r[k] for k in FIELDS])

    def add(self, step, seconds, loss, metric, value):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([step, f"{seconds:.4f}", f"{loss:.5f}", metric,
                                    f"{value:.5f}"])


def read_metrics(path):
    """The rows of a metrics.csv, numbers as numbers."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = set(FIELDS) - set(rows[0]) if rows else set()
    if missing:
        raise ValueError(f"{path}: not a metrics.csv written by training (no column "
                         f"{', '.join(sorted(missing))})")
    return [dict(step=int(r["step"]), seconds=float(r["seconds"]), loss=float(r["loss"]),
                 metric=r["metric"], value=float(r["value"])) for r in rows]


def reached(value, target, higher_is_better):
    """Whether a held-out figure is at the target (accuracy from below, bits from above)."""
    return value >= target if higher_is_better else value <= target


def time_to_target(rows, target, higher_is_better):
    """(seconds, step) of the first evaluation that reached `target`, or None."""
    for r in rows:
        if reached(r["value"], target, higher_is_better):
            return r["seconds"], r["step"]
    return None


def save_curve_png(rows, path, title):
    """Training loss and the held-out metric against the step, in two panels. Returns False
    (and draws nothing) without matplotlib."""
    plt = pyplot()
    if plt is None or not rows:
        return False
    steps = [r["step"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(steps, [r["loss"] for r in rows], marker="." if len(rows) < 3 else None)
    left.set_xlabel("step")
    left.set_ylabel("training loss (mean since the last point)")
    right.plot(steps, [r["value"] for r in rows], color="tab:green",
               marker="." if len(rows) < 3 else None)
    right.set_xlabel("step")
    right.set_ylabel(f"held-out {rows[-1]['metric']}")
    if len(rows) > 1:  # one point has no span of minutes to map
        top = right.secondary_xaxis("top", functions=_step_to_minutes(rows))
        top.set_xlabel("minutes of training")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _step_to_minutes(rows):
    """The step axis read as minutes (piecewise linear through the rows) and back."""
    import numpy as np
    steps = np.array([0] + [r["step"] for r in rows], dtype=float)
    minutes = np.array([0] + [r["seconds"] / 60 for r in rows], dtype=float)
    return (lambda s: np.interp(s, steps, minutes), lambda m: np.interp(m, minutes, steps))


def compare_runs(runs, target, higher_is_better, png_path=None):
    """`runs`: {label: rows}. Returns the lines of a report (time to `target` for each run,
    and the ratio of the first two), and draws the curves against wall time into `png_path`
    when matplotlib is there."""
    lines, reached = [], {}
    metric = next(iter(runs.values()))[-1]["metric"]
    for label, rows in runs.items():
        hit = time_to_target(rows, target, higher_is_better)
        best = (max if higher_is_better else min)(r["value"] for r in rows)
        if hit is None:
            lines.append(f"{label}: did not reach {metric} {target} in {rows[-1]['seconds']:.0f} s "
                         f"({rows[-1]['step']} steps; best {best:.3f})")
        else:
            reached[label] = hit[0]
            lines.append(f"{label}: {metric} {target} after {hit[0]:.0f} s ({hit[0] / 60:.1f} "
                         f"min, step {hit[1]}; best {best:.3f})")
    labels = list(runs)
    if len(labels) >= 2 and labels[0] in reached and labels[1] in reached:
        first, second = reached[labels[0]], reached[labels[1]]
        # A run can reach the target before the clock's resolution (older logs kept 0.01 s).
        ratio = f"{second / first:.2f}x" if first > 0 else "not measurable (reached at 0 s)"
        lines.append(f"time to {metric} {target}: {labels[1]} / {labels[0]} = {ratio}")
    plt = pyplot()
    if png_path and plt is not None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for label, rows in runs.items():
            ax.plot([r["seconds"] / 60 for r in rows], [r["value"] for r in rows], label=label)
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("minutes of training (evaluations not counted)")
        ax.set_ylabel(f"held-out {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(png_path, dpi=110)
        plt.close(fig)
        lines.append(f"curves drawn in {png_path}")
    return lines


def learning_rate_factor(step, steps, warmup, schedule="cosine", floor=0.1):
    """The factor of the peak learning rate at `step`: linear warm-up over `warmup` steps,
    then constant or a cosine decay to `floor` at the last step. A pure function of the
    step, so a resumed run continues the same schedule."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
