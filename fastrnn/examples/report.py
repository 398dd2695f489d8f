"""How the classifier's results are shown: the confusion matrix as text and as a picture."""


def format_confusion(confusion, classes):
    """Laid out as in the handout: one row per true class, one column per predicted class."""
    width = max(10, max(len(c) for c in classes) + 2)
    lines = [" " * width + "".join(f"{c.capitalize():>{width}}" for c in classes)]
    for name, row in zip(classes, confusion.tolist()):
        lines.append(f"{name.capitalize():<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines) + "\n(rows: true class, columns: predicted)"


def pyplot():
    """matplotlib's pyplot drawing to files, or None without matplotlib (pictures are a
    nicety: the text reports and metrics.csv carry the same figures)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_confusion_png(confusion, classes, accuracy, path):
    """Draws the matrix into `path`; returns False (and draws nothing) without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(confusion.numpy(), cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(confusion[i, j].item()), ha="center", va="center")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {accuracy:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
