import gzip
import hashlib
import json
import logging
import subprocess
import sys

import pytest
from conftest import make_creditcard, python_environment, set_params

from fraudflow.common import RAW_CSV, RAW_DIR, RAW_RECORD, StageError
from stages import download


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "source" / "creditcard.csv"
    path.parent.mkdir()
    make_creditcard(rows=200, frauds=5).to_csv(path, index=False)
    return path


def use_source(project, source, sha256):
    """download.url names the source, with no mirrors to fall back on."""
    set_params(project / "params.yaml", download__url=str(source), download__mirrors=[], download__sha256=sha256)


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("form", ["path", "file_url", "gzip"])
def test_local_sources_are_copied_and_verified(project, csv_file, form):
    source = {"path": csv_file, "file_url": csv_file.as_uri(), "gzip": csv_file.with_suffix(".csv.gz")}[form]
    if form == "gzip":
        source.write_bytes(gzip.compress(csv_file.read_bytes()))
    use_source(project, source, sha256_of(csv_file))
    download.main()
    assert RAW_CSV.read_bytes() == csv_file.read_bytes()
    assert json.loads(RAW_RECORD.read_text()) == {"sha256": sha256_of(csv_file)}  # what export writes in model.json


def test_empty_checksum_warns_and_skips_verification(project, csv_file, caplog):
    use_source(project, csv_file, "")
    download.main()
    assert RAW_CSV.read_bytes() == csv_file.read_bytes()
    assert "not verified" in caplog.text


def test_checksum_mismatch_leaves_no_output(project, csv_file):
    use_source(project, csv_file, "0" * 64)
    with pytest.raises(StageError, match="sha256 mismatch.*If the data changed on purpose, set download.sha256"):
        download.main()
    assert not RAW_DIR.parent.exists()  # data/raw, its temporary twin, data/raw.json, data/: nothing is left


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_leaves_no_output(project, csv_file, damage):
    packed = gzip.compress(csv_file.read_bytes())
    packed = packed[: len(packed) // 2] if damage == "truncated" else packed[:20] + b"\xff" * 50 + packed[70:]
    source = csv_file.with_suffix(".csv.gz")
    source.write_bytes(packed)
    use_source(project, source, "")
    with pytest.raises(StageError, match="gzip"):
        download.main()
    assert not RAW_CSV.exists() and not RAW_RECORD.exists()


def test_unreachable_urls_are_all_named_with_a_hint(project, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    dead = ["http://127.0.0.1:9/creditcard.csv", "http://127.0.0.1:9/mirror.csv"]
    set_params(project / "params.yaml", download__url=dead[0], download__mirrors=dead[1:])
    with pytest.raises(StageError) as error:
        download.main()
    message = str(error.value)
    assert all(url in message for url in dead)
    assert download.MIRROR_ENV in message  # the hint: a local copy of the same bytes
    assert not RAW_CSV.exists()


def test_a_mirror_is_tried_after_a_failing_url(project, monkeypatch, csv_file):
    set_params(
        project / "params.yaml",
        download__url=str(csv_file.with_name("missing.csv")),
        download__mirrors=[csv_file.as_uri()],
        download__sha256=sha256_of(csv_file),
    )
    download.main()
    assert RAW_CSV.read_bytes() == csv_file.read_bytes()


def test_cli_prints_one_line_error_and_exits_nonzero(project, csv_file):
    set_params(project / "params.yaml", download__url=str(csv_file), download__mirrors=[])  # sha256: the real data's
    result = subprocess.run(
        [sys.executable, "-m", "stages.download"], env=python_environment(), capture_output=True, text=True
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sha256 mismatch" in errors[0] and str(csv_file) in errors[0]


@pytest.mark.parametrize("variable", ["FRAUDFLOW_DATA_MIRROR", "CREDITCARD_URL"])
def test_the_environment_mirror_with_an_empty_sha256_is_refused(project, csv_file, monkeypatch, variable):
    """DVC cannot see the environment: with no checksum to hold the bytes to, the variable could silently replace
    the table download.url names."""
    own = csv_file.with_name("own.csv")
    make_creditcard(rows=50, frauds=2).to_csv(own, index=False)
    use_source(project, own, "")
    monkeypatch.setenv(variable, str(csv_file))
    with pytest.raises(StageError, match=rf"^environment variable {variable}=.* only when download.sha256 is set; "):
        download.main()
    assert not RAW_DIR.exists() and not RAW_RECORD.exists()


def test_the_environment_mirror_is_read_first_when_the_sha256_holds_it(project, csv_file, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="fraudflow")
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    set_params(
        project / "params.yaml",
        download__url="http://127.0.0.1:9/creditcard.csv",  # unreachable: never tried, the mirror comes first
        download__mirrors=[],
        download__sha256=sha256_of(csv_file),
    )
    monkeypatch.setenv("FRAUDFLOW_DATA_MIRROR", str(csv_file))
    download.main()
    assert RAW_CSV.read_bytes() == csv_file.read_bytes()
    assert f"download: reading {csv_file}" in caplog.text and "127.0.0.1" not in caplog.text


def test_a_mirror_of_other_bytes_falls_back_to_the_url(project, csv_file, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="fraudflow")
    other = csv_file.with_name("other.csv")
    make_creditcard(rows=50, frauds=2, seed=1).to_csv(other, index=False)
    use_source(project, csv_file, sha256_of(csv_file))
    monkeypatch.setenv("CREDITCARD_URL", str(other))  # the old name: read, with a warning
    download.main()
    assert RAW_CSV.read_bytes() == csv_file.read_bytes()
    assert "CREDITCARD_URL is deprecated" in caplog.text and "sha256 mismatch" in caplog.text
