"""The documents stay true: every runnable code block of README.md and docs/*.md runs as
written, and every relative link or image points to a file.

A fenced ```python or ```bash block is runnable unless the line just before its opening
fence is an HTML comment ``<!-- not run: REASON -->`` (invisible when rendered): the mark
for blocks that install packages, build, train, benchmark or run the test suite itself.
Python blocks run in a fresh namespace, bash blocks with ``bash -euo pipefail`` from the
repository's root."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"^<!-- not run: .+ -->$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def parse(path):
    """(code blocks as (language, code, first line, runnable), the text outside them)."""
    blocks, prose, lines = [], [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)", lines[i])
        if not fence:
            prose.append(lines[i])
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        runnable = not (start > 0 and NOT_RUN.match(lines[start - 1]))
        blocks.append((fence.group(1), "\n".join(body) + "\n", start + 1, runnable))
    return blocks, "\n".join(prose)


BLOCKS = [(path, *block) for path in DOCUMENTS for block in parse(path)[0]
          if block[0] in ("python", "bash")]
RUNNABLE = [b for b in BLOCKS if b[4]]


def block_id(block):
    return f"{block[0].relative_to(ROOT)}:{block[3]}"


def test_the_documents_have_runnable_blocks():
    assert DOCUMENTS[0].exists() and len(DOCUMENTS) > 1
    assert any(b[1] == "python" for b in RUNNABLE) and any(b[1] == "bash" for b in RUNNABLE)


def test_every_block_is_runnable_or_says_why_not():
    for path in DOCUMENTS:
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            if line.startswith("<!-- not run"):
                assert NOT_RUN.match(line) and n + 1 < len(lines) and \
                    lines[n + 1].startswith("```"), f"{path.name}:{n + 1}: a mark without " \
                    "a reason, or not just before a code block"


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=block_id)
def test_block_runs(block):
    document, language, code, line, _ = block
    if language == "python":
        exec(compile(code, f"{document.name} block at line {line}", "exec"), {})
        return
    # `python` in a block is this interpreter (the one with fastrnn installed)
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 0, f"{document.name}:{line}: {result.stderr[-2000:]}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files(path):
    _, prose = parse(path)
    missing = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        if not (path.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert not missing, f"{path.name} links to files that do not exist: {missing}"
