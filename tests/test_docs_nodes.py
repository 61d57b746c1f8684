"""docs/nodes.md, docs/finite-differences.md and docs/rules.md are worked examples that run: their
Python blocks execute in order, their asserts hold, and each printed table has the rows and
verdicts the guide shows."""

import contextlib
import io
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "nodes.md"
GUIDES = [GUIDE, ROOT / "docs" / "finite-differences.md", ROOT / "docs" / "rules.md"]
BLOCK = re.compile(r"```(python|text)\n(.*?)```", re.S)
NUMBER = re.compile(r"-?\d+\.\d+(e[+-]\d+)?|-?\d+e[+-]\d+|\[[\d, ]*\]")


def blocks(text):
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def normalise(text: str) -> list[str]:
    """The table with its figures blanked (the rows, shapes and verdicts remain)."""
    return [" ".join(NUMBER.sub("#", line).split()) for line in text.strip().splitlines()]


def run_guide(text, where=GUIDE):
    """Executes the Python blocks in one namespace; returns [(shown text, printed text)]."""
    namespace: dict = {"__name__": "guide"}
    pairs, last_output = [], None
    for kind, body in blocks(text):
        if kind == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                # The guide's path relative to the repository: a message naming a line of a block
                # (docs/nodes.md:3:8) reads the same on every machine.
                exec(compile(body, where.relative_to(ROOT).as_posix(), "exec"), namespace)
            last_output = out.getvalue()
        elif last_output is not None:
            pairs.append((body, last_output))
            last_output = None
    return pairs


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_guide_runs_and_shows_what_it_prints(guide):
    text = guide.read_text(encoding="utf-8")
    assert sum(kind == "python" for kind, _ in blocks(text)) >= 5
    pairs = run_guide(text, guide)
    assert len(pairs) >= 3
    for shown, printed in pairs:
        assert normalise(shown) == normalise(printed), (
            f"guide shows\n{shown}\nbut prints\n{printed}"
        )


if __name__ == "__main__":  # regenerate nothing; print what the blocks print, to paste
    for _, printed in run_guide(GUIDE.read_text(encoding="utf-8")):
        print(printed)
        print("-----")
