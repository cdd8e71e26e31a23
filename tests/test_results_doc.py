"""The generated results: docs/results.md is what the report stage writes from the committed metrics, and README.md's
results block is its summary (fraudflow.readme)."""

import pytest
import yaml
from conftest import REPO

from fraudflow import readme
from stages import report

SUMMARY = "## Summary\n\n**Deploy `gbdt`**\n\n| strategy | average precision |\n| --- | --- |\n| gbdt | 0.842 |"


def test_the_committed_results_document_is_what_report_writes_from_the_committed_metrics(monkeypatch):
    monkeypatch.chdir(REPO)
    assert report.document() == report.RESULTS_FILE.read_text(), "docs/results.md is stale: run 'dvc repro report'"


def test_the_committed_readmes_results_block_is_the_documents_summary(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert readme.main(["--check"]) == 0, capsys.readouterr().err


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A README with a results block and a results document, as the report stage writes it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text(f"# Results\n\n{readme.SUMMARY[0]}\n{SUMMARY}\n{readme.SUMMARY[1]}\n")
    (tmp_path / "README.md").write_text(
        f"# fraudflow\n\n{readme.BLOCK[0]}\nold results\n{readme.BLOCK[1]}\n\n## Next\n"
    )
    return tmp_path


def test_the_check_fails_when_readme_and_report_disagree_and_the_copy_mends_it(project, capsys):
    assert readme.main(["--check"]) == 1
    assert "README.md: its results block differs from docs/results.md's summary" in capsys.readouterr().err
    assert "old results" in (project / "README.md").read_text()  # --check writes nothing
    assert readme.main([]) == 0
    text = (project / "README.md").read_text()
    body = SUMMARY.split("\n", 2)[2]  # without its title: the README has its own heading
    assert text.endswith(f"{readme.BLOCK[0]}\n{body}\n{readme.BLOCK[1]}\n\n## Next\n")
    assert readme.main(["--check"]) == 0


@pytest.mark.parametrize("damaged", ["README.md", "docs/results.md"])
def test_a_file_without_its_markers_is_a_one_line_error(project, capsys, damaged):
    (project / damaged).write_text("# no markers\n")
    assert readme.main(["--check"]) == 1
    assert capsys.readouterr().err.startswith(f"error: {damaged}: no block between the lines ")


def test_the_report_stage_depends_on_every_params_section_the_document_shows():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]
    assert [entry for entry in stage["params"] if isinstance(entry, str)] == list(report.RESULT_PARAMS)
