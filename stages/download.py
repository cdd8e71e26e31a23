"""download: fetch the raw table into data/raw and verify its sha256; record the sha256 in data/raw.json.

The table is a CSV (plain or .gz; written as data/raw/table.csv), a Parquet file or a local folder of Parquet
files as Spark, Dask, DuckDB, Polars or pyarrow write them (either written as data/raw/table.parquet), from a
URL, a mirror, a local path or a file:// URL. A folder's data files are copied in their subfolders (hive partitions
such as date=2026-11-30/); its sha256 is that of its manifest (fraudflow.inputs.fingerprint).

The environment variable FRAUDFLOW_DATA_MIRROR names a local copy to try first (offline machines), but only when
download.sha256 is set: DVC does not see the environment, so the variable may change where the bytes come from,
never what they are.
"""

import gzip
import hashlib
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from fraudflow import inputs
from fraudflow.common import (
    RAW_CSV,
    RAW_DIR,
    RAW_PARQUET,
    RAW_RECORD,
    StageError,
    atomic_output,
    load_params,
    log,
    require,
    run,
    write_json,
)

MIRROR_ENV = "FRAUDFLOW_DATA_MIRROR"
DEPRECATED_ENV = "CREDITCARD_URL"  # its old name, still read (with a warning) in this release
CHUNK = 1 << 20
RETRIES = 3
TIMEOUT_SECONDS = 30


class SourceError(Exception):
    """This source failed; the next one may work."""


def environment_mirror() -> tuple[str, str] | None:
    """(variable, value) of the local copy the environment names, if any."""
    for name in (MIRROR_ENV, DEPRECATED_ENV):
        value = os.environ.get(name, "").strip()
        if value:
            if name == DEPRECATED_ENV:
                log.warning("warning: %s is deprecated; name the local copy in %s instead", name, MIRROR_ENV)
            return name, value
    return None


def sources(params: dict, expected_sha256: str) -> list[str]:
    """The environment's mirror (only with a sha256 to check it against), then the params' URL and its mirrors."""
    url = require(params, "download", "url", lambda v: isinstance(v, str) and v.strip(), "a URL or path")
    mirrors = require(params, "download", "mirrors", lambda v: isinstance(v, list), "a list of URLs")
    mirror = environment_mirror()
    if mirror is None:
        return [url, *mirrors]
    if not expected_sha256:
        raise StageError(
            f"environment variable {mirror[0]}={mirror[1]} stands in for download.url only when download.sha256 is "
            f"set; unset it, or set download.url to the table you mean (and download.sha256 to its checksum)"
        )
    return [mirror[1], url, *mirrors]


def local_path(source: str) -> Path | None:
    """The file a local source names (plain path or file:// URL), or None for a network URL."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https", "ftp"):
        return None
    return Path(source)


def open_source(source: str):
    """A binary stream of the source and its size in bytes (None if unknown); network errors are retried."""
    path = local_path(source)
    if path is not None:
        try:
            return path.open("rb"), path.stat().st_size
        except OSError as error:
            raise SourceError(f"cannot open {path} ({error.strerror})") from error
    for attempt in range(1, RETRIES + 1):
        try:
            response = urllib.request.urlopen(source, timeout=TIMEOUT_SECONDS)
            size = response.headers.get("Content-Length")
            return response, int(size) if size else None
        except urllib.error.HTTPError as error:
            if error.code < 500 or attempt == RETRIES:
                raise SourceError(f"HTTP {error.code} {error.reason}") from error
            reason = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if attempt == RETRIES:
                raise SourceError(f"unreachable ({reason})") from error
        log.info("%s: attempt %d failed (%s), retrying", source, attempt, reason)
        time.sleep(2 ** (attempt - 1))


def copy_verified(source: str, destination: Path, expected_sha256: str):
    """Stream the source (decompressing .gz) into destination, checking its sha256 if one is expected."""
    stream, size = open_source(source)
    digest = hashlib.sha256()
    compressed = urllib.parse.urlparse(source).path.endswith(".gz")
    with tqdm.wrapattr(stream, "read", total=size, desc="download", mininterval=2) as counted:
        reader = gzip.GzipFile(fileobj=counted) if compressed else counted
        try:
            with destination.open("wb") as out:
                while chunk := reader.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise SourceError(f"truncated or corrupt gzip ({error})") from error
        except OSError as error:
            raise SourceError(f"read failed ({error})") from error
    if destination.stat().st_size == 0:
        raise SourceError("empty file")
    actual = digest.hexdigest()
    if expected_sha256 and actual != expected_sha256.lower():
        raise SourceError(f"sha256 mismatch: expected {expected_sha256}, got {actual}")
    return actual


def copy_folder(source: Path, destination: Path, expected_sha256: str) -> str:
    """Copy a Parquet folder's data files (inputs.parquet_files: checked first) into destination, keeping their
    subfolders; check the sha256 of its manifest if one is expected."""
    files = inputs.parquet_files(source)
    with inputs.progress(sum(file.stat().st_size for file in files), "B", "download") as bar:
        for file in files:
            target = destination / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)  # the kernel's copy (a reflink where the file system has them)
            bar.update(file.stat().st_size)
    actual = inputs.fingerprint(destination)
    if expected_sha256 and actual != expected_sha256.lower():
        raise SourceError(f"sha256 mismatch (of the folder's manifest): expected {expected_sha256}, got {actual}")
    log.info("download: %d Parquet files", len(files))
    return actual


def fetch(source: str, folder: Path, expected_sha256: str) -> str:
    """Write the source into folder as table.csv or table.parquet (file or folder); return its sha256."""
    path = local_path(source)
    if path is not None and path.is_dir():
        return copy_folder(path, folder / RAW_PARQUET.name, expected_sha256)
    name = urllib.parse.urlparse(source).path if path is None else path.name
    raw = RAW_PARQUET if name.endswith(".parquet") else RAW_CSV
    return copy_verified(source, folder / raw.name, expected_sha256)


def main():
    params = load_params("download")
    expected = require(
        params, "download", "sha256", lambda v: v is None or isinstance(v, str), "a sha256 hex string or empty"
    )
    expected = (expected or "").strip()
    if not expected:
        log.warning("warning: download.sha256 is empty, so the data's checksum is not verified")
    failures = []
    for source in sources(params, expected):
        log.info("download: reading %s -> %s", source, RAW_DIR)
        try:
            with atomic_output(RAW_DIR) as tmp:
                tmp.mkdir()
                actual = fetch(source, tmp, expected)
        except SourceError as error:
            log.info("download: %s: %s", source, error)
            failures.append(f"{source}: {error}")
            continue
        raw = inputs.raw_input()
        write_json(RAW_RECORD, {"sha256": actual})
        log.info("download: wrote %s from %s (sha256 %s)", raw, source, actual)
        return
    if all("sha256 mismatch" in failure for failure in failures):
        hint = 'If the data changed on purpose, set download.sha256 to its sha256 (or to "" to skip the check)'
    else:
        hint = f"To use a local copy of the same bytes, set {MIRROR_ENV}=/path/to/it and run 'dvc repro -f download'"
    raise StageError("could not get the data; tried " + "; ".join(failures) + f". {hint}")


if __name__ == "__main__":
    run(main)
