import gzip
import hashlib
import subprocess
import sys

import pytest
from conftest import make_creditcard, python_environment, set_params

from fraudflow.common import RAW_CSV, RAW_DIR, StageError
from stages import download


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "source" / "creditcard.csv"
    path.parent.mkdir()
    make_creditcard(rows=200, frauds=5).to_csv(path, index=False)
    return path


def use_source(project, monkeypatch, source, sha256):
    monkeypatch.setenv(download.SOURCE_ENV, str(source))
    set_params(project / "params.yaml", download__sha256=sha256)


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("form", ["path", "file_url", "gzip"])
def test_local_sources_are_copied_and_verified(project, monkeypatch, csv_file, form):
    source = {"path": csv_file, "file_url": csv_file.as_uri(), "gzip": csv_file.with_suffix(".csv.gz")}[form]
    if form == "gzip":
        source.write_bytes(gzip.compress(csv_file.read_bytes()))
    use_source(project, monkeypatch, source, sha256_of(csv_file))
    download.main()
    assert RAW_CSV.read_bytes() == csv_file.read_bytes()


def test_empty_checksum_warns_and_skips_verification(project, monkeypatch, csv_file, caplog):
    use_source(project, monkeypatch, csv_file, "")
    download.main()
    assert RAW_CSV.read_bytes() == csv_file.read_bytes()
    assert "not verified" in caplog.text


def test_checksum_mismatch_leaves_no_output(project, monkeypatch, csv_file):
    use_source(project, monkeypatch, csv_file, "0" * 64)
    with pytest.raises(StageError, match="sha256 mismatch.*If the data changed on purpose, set download.sha256"):
        download.main()
    assert not RAW_DIR.parent.exists()  # data/raw, its temporary twin, data/: nothing is left


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_leaves_no_output(project, monkeypatch, csv_file, damage):
    packed = gzip.compress(csv_file.read_bytes())
    packed = packed[: len(packed) // 2] if damage == "truncated" else packed[:20] + b"\xff" * 50 + packed[70:]
    source = csv_file.with_suffix(".csv.gz")
    source.write_bytes(packed)
    use_source(project, monkeypatch, source, "")
    with pytest.raises(StageError, match="gzip"):
        download.main()
    assert not RAW_CSV.exists()


def test_unreachable_urls_are_all_named_with_a_hint(project, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    dead = ["http://127.0.0.1:9/creditcard.csv", "http://127.0.0.1:9/mirror.csv"]
    set_params(project / "params.yaml", download__url=dead[0], download__mirrors=dead[1:])
    with pytest.raises(StageError) as error:
        download.main()
    message = str(error.value)
    assert all(url in message for url in dead)
    assert download.SOURCE_ENV in message
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
    env = {**python_environment(), download.SOURCE_ENV: str(csv_file)}
    result = subprocess.run([sys.executable, "-m", "stages.download"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sha256 mismatch" in errors[0] and str(csv_file) in errors[0]
