"""README.md's results block: the summary of docs/results.md (which the report stage writes), copied between the
README's markers, so the README shows the committed results and nothing typed by hand.

    python -m fraudflow.readme            # copy the summary into README.md (make repro runs it after dvc repro)
    python -m fraudflow.readme --check    # exit 1 if README.md's block differs from it (the tests check the same)
"""

import argparse
import sys
from pathlib import Path

from fraudflow.common import StageError, atomic_output

README = Path("README.md")
RESULTS_FILE = Path("docs/results.md")
SUMMARY = ("<!-- summary: start -->", "<!-- summary: end -->")  # around the summary in docs/results.md
BLOCK = (
    "<!-- results: from docs/results.md by python -m fraudflow.readme (make repro runs it); make test checks it -->",
    "<!-- end of results -->",
)


def parts(text: str, markers: tuple[str, str], path: Path) -> tuple[str, str, str]:
    """The text before, between and after a pair of marker lines."""
    start, end = text.find(markers[0] + "\n"), text.find("\n" + markers[1])
    if start < 0 or end < start:
        raise StageError(f"{path}: no block between the lines '{markers[0]}' and '{markers[1]}'")
    start += len(markers[0]) + 1
    return text[:start], text[start:end], text[end:]


def block(results: str) -> str:
    """The README's block: the results document's summary without its title (the README has its own heading)."""
    summary = parts(results, SUMMARY, RESULTS_FILE)[1]
    if summary.startswith("## "):
        summary = summary.split("\n", 1)[1].lstrip("\n")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's block is not the summary")
    check = parser.parse_args(argv).check
    try:
        before, inside, after = parts(README.read_text(), BLOCK, README)
        wanted = block(RESULTS_FILE.read_text())
    except (OSError, StageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if inside == wanted:
        print(f"{README}: its results block is docs/results.md's summary")
        return 0
    if check:
        print(
            f"error: {README}: its results block differs from {RESULTS_FILE}'s summary; run python -m fraudflow.readme",
            file=sys.stderr,
        )
        return 1
    with atomic_output(README) as tmp:
        tmp.write_text(before + wanted + after)
    print(f"{README}: results block updated from {RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
