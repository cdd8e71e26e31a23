"""Reading a table in batches, whatever form it comes in: a CSV (plain or .gz), a Parquet file, or a folder of
Parquet files as Spark, Dask, DuckDB, Polars or pyarrow write them (hive partitions such as `date=2026-11-30/`
become columns). Shared by download and clean (the pipeline's input) and score (new rows).

The batch size is a knob (FRAUDFLOW_BATCH_ROWS, rows per batch); no output depends on it, only memory and time.
"""

import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm import tqdm

from fraudflow.common import CSV_SUFFIXES, RAW_CSV, RAW_DIR, RAW_PARQUET, StageError

BATCH_ROWS_ENV = "FRAUDFLOW_BATCH_ROWS"
DEFAULT_BATCH_ROWS = 1 << 16
CONVERT = pacsv.ConvertOptions(strings_can_be_null=True)  # empty cells and NaN/NA/null spellings are missing


def batch_rows() -> int:
    """Rows per batch: FRAUDFLOW_BATCH_ROWS, or 65,536."""
    value = os.environ.get(BATCH_ROWS_ENV, str(DEFAULT_BATCH_ROWS))
    if not value.isdigit() or int(value) < 1:
        raise StageError(f"environment variable {BATCH_ROWS_ENV} must be an integer >= 1, got {value!r}")
    return int(value)


def csv_block_bytes() -> int:
    """Bytes per block of CSV parsing (Arrow's parser needs about ten times a block in memory): 16 per batch row,
    within 4 KiB to 1 MiB."""
    return min(max(16 * batch_rows(), 1 << 12), 1 << 20)


def csv_error(path, error: Exception) -> StageError:
    reason = "file is empty" if "Empty CSV file" in str(error) else str(error).splitlines()[0]
    return StageError(f"{path}: cannot parse CSV ({reason})")


def header_only(path) -> StageError:
    return StageError(f"{path}: header only, no data rows" if str(path).endswith(CSV_SUFFIXES) else f"{path}: no rows")


def require_columns(names: list[str], path, required: list[str], why: str = ""):
    """Fail naming the first required column that is missing."""
    missing = [name for name in required if name not in names]
    if missing:
        raise StageError(f"{path}: missing column '{missing[0]}'{why}")


def progress(total: int | None, unit: str, desc: str, enabled: bool = True):
    """A progress bar on stderr, shown only when the work takes more than two seconds."""
    return tqdm(total=total, unit=unit, unit_scale=True, desc=desc, delay=2, mininterval=1, disable=not enabled)


def csv_first_block(path: Path) -> pa.RecordBatch:
    """The CSV's first block, every column typed as Arrow infers it (an empty batch for a header-only file)."""
    try:
        with pa.input_stream(path, compression="detect") as stream:
            reader = pacsv.open_csv(stream, pacsv.ReadOptions(block_size=1 << 20), convert_options=CONVERT)
            for batch in reader:
                return batch
            return pa.RecordBatch.from_pylist([], schema=reader.schema)
    except FileNotFoundError as error:
        raise StageError(f"{path}: file not found") from error
    except (pa.ArrowInvalid, OSError) as error:
        raise csv_error(path, error) from error


def csv_blocks(path: Path, schema: pa.Schema | None, desc: str, skip_rows: int = 0):
    """Record batches of the CSV, one per block, typed as `schema` says (None: as Arrow infers each block), from
    data row skip_rows on; a bar counts the bytes read."""
    options = pacsv.ConvertOptions(column_types=schema, strings_can_be_null=True) if schema else CONVERT
    read = pacsv.ReadOptions(block_size=csv_block_bytes(), skip_rows_after_names=skip_rows)
    with open(path, "rb") as file, progress(path.stat().st_size, "B", desc, enabled=bool(desc)) as bar:
        stream = pa.input_stream(file, compression="gzip" if path.name.endswith(".gz") else None)
        for batch in pacsv.open_csv(stream, read, convert_options=options):
            bar.update(file.tell() - bar.n)
            yield batch


def csv_batches(path: Path, schema: pa.Schema, desc: str, name_bad_value):
    """The CSV's record batches typed as `schema` says. Where Arrow cannot convert a block (a text in a number
    column ...), name_bad_value(path, first_row) is called to report it by row before Arrow's own message is."""
    rows = 0
    try:
        for batch in csv_blocks(path, schema, desc):
            yield batch
            rows += batch.num_rows
    except pa.ArrowInvalid as error:
        name_bad_value(path, rows)
        raise csv_error(path, error) from error
    except OSError as error:  # a truncated or corrupt .gz
        raise csv_error(path, error) from error


def csv_block_at(path: Path, first_row: int, schema: pa.Schema | None) -> pa.RecordBatch | None:
    """The block of the CSV that starts at data row first_row, read again (schema None: as Arrow infers it)."""
    try:
        return next(csv_blocks(path, schema, "", skip_rows=first_row), None)
    except pa.ArrowInvalid:
        return None


def numbers_if_possible(column):
    """The column as float64 when Arrow can convert every value, else as it is (validation then decides)."""
    try:
        return pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column


def exact_batches(batches, rows: int):
    """The rows of a stream of batches (or tables), in order, as tables of exactly `rows` rows; the last may be
    shorter. If the stream fails, the rows read before the failure come first (an earlier bad row in them is
    then the one reported, whatever the batch size), then the failure."""
    pending, count = [], 0
    try:
        for batch in batches:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            while count + table.num_rows >= rows:
                take = rows - count
                yield pa.concat_tables([*pending, table.slice(0, take)])
                pending, count, table = [], 0, table.slice(take)
            if table.num_rows:
                pending.append(table)
                count += table.num_rows
    except Exception:
        if pending:
            yield pa.concat_tables(pending)
        raise
    if pending:
        yield pa.concat_tables(pending)


def parquet_files(folder: Path) -> list[Path]:
    """The data files of a Parquet folder, sorted by path: every *.parquet file, except under names starting with
    '.' or '_' (Spark's _SUCCESS, .crc ...). Fails on a folder without one, a subfolder that is not a hive
    partition (key=value), and files whose columns disagree (naming the file and the column)."""
    files = []
    for file in sorted(folder.rglob("*.parquet"), key=str):
        parts = file.relative_to(folder).parts
        if file.is_file() and not any(part.startswith((".", "_")) for part in parts):
            files.append(file)
            bad = [part for part in parts[:-1] if part.count("=") != 1 or part.startswith("=")]
            if bad:
                raise StageError(f"{folder}: subfolder '{bad[0]}' is not a hive partition (key=value)")
    if not files:
        raise StageError(f"{folder}: no Parquet file (*.parquet) in the folder")
    first = read_parquet_schema(files[0])
    for file in files[1:]:
        schema = read_parquet_schema(file)
        for name in dict.fromkeys([*first.names, *schema.names]):
            if name not in schema.names or name not in first.names:
                where = file if name not in schema.names else files[0]
                raise StageError(f"{where}: no column '{name}', which other files of {folder} have")
            if kind(schema.field(name).type) != kind(first.field(name).type):
                raise StageError(
                    f"{file}: column '{name}' is {schema.field(name).type}, but {first.field(name).type} in {files[0]}"
                )
    return files


def is_text(type_: pa.DataType) -> bool:
    """Text in either of Arrow's layouts (engines differ: Polars writes large_string)."""
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def kind(type_: pa.DataType) -> pa.DataType:
    """The type, but text in any layout as string."""
    return pa.string() if is_text(type_) else type_


def read_parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise StageError(f"{path}: cannot read Parquet ({error})") from error


def parquet_dataset(path: Path) -> ds.Dataset:
    """A Parquet file, or a folder of them with its hive partition columns, as one dataset."""
    if path.is_dir():
        files, partitioning = parquet_files(path), ds.partitioning(flavor="hive")
    else:
        read_parquet_schema(path)  # fails in one line on a file that is not Parquet
        files, partitioning = [path], None
    return ds.dataset(
        [str(f) for f in files], format="parquet", partitioning=partitioning, partition_base_dir=str(path)
    )


# Arrow reads a whole Parquet file ahead by default (pre_buffer), and 16 batches ahead in a dataset scan: memory
# that grows with the file. Without them a read holds about one row group.
UNBUFFERED = ds.ParquetFragmentScanOptions(pre_buffer=False)


def parquet_file(path: Path, stage: str) -> pq.ParquetFile:
    """A Parquet file (an output of `stage`) to read row group by row group."""
    try:
        return pq.ParquetFile(path, pre_buffer=False)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise StageError(f"{path}: cannot read Parquet ({error}); run 'dvc repro {stage}'") from error


def parquet_batches(dataset: ds.Dataset, desc: str):
    """The dataset's record batches, file by file in path order, partition columns included; a bar counts rows."""
    fragments = sorted(dataset.get_fragments(), key=lambda fragment: fragment.path)
    with progress(dataset.count_rows(), "rows", desc, enabled=bool(desc)) as bar:
        for fragment in fragments:
            try:
                for batch in fragment.to_batches(
                    schema=dataset.schema, batch_size=batch_rows(), batch_readahead=1, fragment_scan_options=UNBUFFERED
                ):
                    bar.update(batch.num_rows)
                    yield batch
            except (OSError, pa.ArrowException) as error:
                raise StageError(f"{fragment.path}: cannot read Parquet ({error})") from error


def fingerprint(path: Path) -> str:
    """sha256 of a file; of a Parquet folder, sha256 of its manifest: a line "<sha256>  <relative path>" per data
    file (parquet_files), in path order, as `sha256sum` writes them."""
    if path.is_file():
        return file_sha256(path)
    lines = "".join(f"{file_sha256(file)}  {file.relative_to(path).as_posix()}\n" for file in parquet_files(path))
    return hashlib.sha256(lines.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def raw_input() -> Path:
    """The raw table download wrote: data/raw/table.csv, or data/raw/table.parquet (file or folder)."""
    for path in (RAW_CSV, RAW_PARQUET):
        if path.exists():
            return path
    raise StageError(f"{RAW_DIR}: no {RAW_CSV.name} or {RAW_PARQUET.name}; run 'dvc repro download'")
