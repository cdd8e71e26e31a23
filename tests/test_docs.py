"""The README and the documentation site (docs/, mkdocs.yml): the site builds with `mkdocs build --strict`, which
fails on a page left out of the nav, a broken link or anchor and a missing included file; the README stays short,
reaches "your own data" early and keeps the two commands; no measured number is typed into either."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
GENERATED = {"results.md"}  # docs/results.md: written by stages/report.py from the metrics
README_MAX_LINES = 200
OWN_DATA_BY_LINE = 60
OWN_DATA_HEADING = re.compile(r"^#+ .*\byour own (data|table)\b", re.IGNORECASE)
RESULTS_BLOCK = re.compile(r"<!-- results:.*?-->.*?<!-- end of results -->", re.DOTALL)
SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"', re.MULTILINE)
# A typed measurement: a number with a unit of time or memory, or a value with its interval ("0.81 [0.74, 0.88]").
MEASURED = re.compile(r"\b\d[\d,.]*\s?(?:ms|s|KiB|MiB|GiB|KB|MB|GB|minutes?|seconds?|hours?)\b|\d\.\d+ \[[-+−]?\d")


def mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of the project at root (snippets' paths are relative to it), into site."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def nav_pages(nav) -> list[str]:
    """Every page file a mkdocs nav names, at any depth."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for entry in nav for page in nav_pages(entry)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def copy_site_sources(destination: Path):
    """mkdocs.yml, docs/ and every file a page includes, so a build there is the repository's."""
    shutil.copy(REPO / "mkdocs.yml", destination / "mkdocs.yml")
    shutil.copytree(DOCS, destination / "docs")
    for page in DOCS.glob("*.md"):
        for included in SNIPPET.findall(page.read_text()):
            (destination / included).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / included, destination / included)


def test_the_site_builds_with_strict(tmp_path):
    built = mkdocs_build(REPO, tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert not re.search(r"^(WARNING|ERROR)\b", built.stderr, re.MULTILINE), built.stderr


@pytest.mark.parametrize(
    "plant, message",
    [
        ("[a link](no-such-page.md)\n", "not found among documentation files"),
        ("[an anchor](method.md#no-such-heading)\n", "does not contain an anchor"),
        ("[a repository file](../stages/score.py)\n", "not found among documentation files"),
        ('--8<-- "no/such/file.md"\n', "could not be found"),
    ],
)
def test_strict_fails_on_a_broken_link_anchor_or_include(tmp_path, plant, message):
    copy_site_sources(tmp_path)
    page = tmp_path / "docs" / "params.md"
    page.write_text(page.read_text() + "\n" + plant)
    built = mkdocs_build(tmp_path, tmp_path / "site")
    assert built.returncode != 0
    assert message in built.stdout + built.stderr


def test_strict_fails_on_a_page_left_out_of_the_nav(tmp_path):
    copy_site_sources(tmp_path)
    (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n")
    built = mkdocs_build(tmp_path, tmp_path / "site")
    assert built.returncode != 0
    assert "orphan.md" in built.stdout + built.stderr


def test_every_include_line_is_an_include_the_build_resolves():
    """A line that starts an include but is not one (say, reformatted) is printed as text, and --strict passes it."""
    for page in DOCS.glob("*.md"):
        for line in page.read_text().splitlines():
            if line.lstrip().startswith("--8"):
                assert SNIPPET.match(line), f"{page.name}: not an include: {line!r}"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])
    pages = sorted(path.name for path in DOCS.glob("*.md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, at most {README_MAX_LINES}"


def test_the_readme_reaches_your_own_data_early():
    lines = README.read_text().splitlines()
    found = [number for number, line in enumerate(lines, 1) if OWN_DATA_HEADING.match(line)]
    assert found, "README.md has no 'Your own data' heading"
    assert found[0] <= OWN_DATA_BY_LINE, f"'your own data' starts at line {found[0]}, after line {OWN_DATA_BY_LINE}"


def test_the_readme_keeps_the_two_commands():
    commands = [line.split("#")[0].strip() for line in README.read_text().splitlines()]
    assert "make repro" in commands
    assert "make test" in commands


def test_the_readmes_links_to_docs_pages_exist():
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    assert links, "README.md links to no docs page"
    missing = sorted({link for link in links if not (REPO / link).is_file()})
    assert not missing, f"README.md links to missing files: {missing}"
    pages = {f"docs/{path.name}" for path in DOCS.glob("*.md")}
    assert pages <= set(links), f"README.md's 'Read on' leaves out {sorted(pages - set(links))}"


def test_no_measured_number_is_typed_into_the_readme_or_the_docs():
    """Results come from the metrics (docs/results.md, the README's results block), measured figures from the
    benchmark (benchmarks/results.md, which docs/performance.md includes): none is typed by hand."""
    texts = {"README.md": RESULTS_BLOCK.sub(lambda block: "\n" * block[0].count("\n"), README.read_text())}
    texts |= {f"docs/{p.name}": p.read_text() for p in DOCS.glob("*.md") if p.name not in GENERATED}
    found = [
        f"{name}:{number}: {match.group(0)!r}"
        for name, text in texts.items()
        for number, line in enumerate(text.splitlines(), 1)
        for match in MEASURED.finditer(line)
    ]
    assert not found, "typed measurements (generate them, or name the param):\n" + "\n".join(found)
