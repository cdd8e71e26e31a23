"""The training stages' predictions files (data/predictions/<strategy>.parquet, the blend's data/blend/blend.parquet)
as evaluate and the blend read them, in bounded memory: one split's columns, a member at a time, or several
strategies' rows of a split side by side, block by block."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fraudflow.common import StageError
from fraudflow.compare import MemberMean
from fraudflow.inputs import exact_batches
from fraudflow.operating import shift_probabilities
from fraudflow.stats import DRAW_ROWS
from fraudflow.strategies import REGISTRY

BLOCK_ROWS = DRAW_ROWS  # test rows read and scored at a time; no result depends on it


def member_columns(strategy: str) -> list[str]:
    """The member_<i> columns of a strategy's predictions file."""
    path = REGISTRY[strategy].predictions
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as error:
        raise StageError(
            f"{path}: cannot read Parquet ({error}); run 'dvc repro {REGISTRY[strategy].stage}'"
        ) from error
    members = [name for name in names if name.startswith("member_")]
    missing = [name for name in ("split", "label") if name not in names] + ([] if members else ["member_<i>"])
    if missing:
        raise StageError(f"{path}: no {' or '.join(missing)} columns; run 'dvc repro {REGISTRY[strategy].stage}'")
    return members


def as_arrays(table: pa.Table, members: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and (rows, members) probabilities as trained."""
    probabilities = np.stack([table[name].to_numpy() for name in members]).T
    return table["label"].to_numpy(), probabilities


def split_batches(strategy: str, split: str, columns: list[str]):
    """One split's rows of some columns of a strategy's predictions, in batches of at most BLOCK_ROWS rows, read
    a row group at a time (pyarrow's iter_batches kept every row it had read until the file was closed: 600 MB
    for the four files' test rows at 64x)."""
    file = pq.ParquetFile(REGISTRY[strategy].predictions)
    for group in range(file.num_row_groups):
        rows = file.read_row_group(group, columns=["split", *columns])
        yield from rows.filter(pc.equal(rows["split"], split)).to_batches(max_chunksize=BLOCK_ROWS)


def split_column(strategy: str, split: str, column: str) -> np.ndarray:
    """One column of one split of a strategy's predictions, whole."""
    return pa.Table.from_batches(split_batches(strategy, split, [column]))[column].to_numpy()


class MemberColumns:
    """One split of a strategy's predictions, one member's column at a time, prior-corrected by `shift`; the
    ensemble's probabilities, as trained and corrected, are summed on the way (so memory holds about three
    columns, never every member's)."""

    def __init__(self, strategy: str, split: str, shift: float):
        self.strategy, self.split, self.shift = strategy, split, shift
        self.members = member_columns(strategy)
        self.labels = split_column(strategy, split, "label")
        self.as_trained, self.calibrated = MemberMean(), MemberMean()

    def __iter__(self):
        for name in self.members:
            raw = split_column(self.strategy, self.split, name)
            calibrated = shift_probabilities(raw, self.shift)
            self.as_trained.add(raw)
            self.calibrated.add(calibrated)
            yield calibrated

    def read_all(self) -> "MemberColumns":
        """Reads every member's column once, for the ensemble's sums alone; returns itself."""
        for _ in self:
            pass
        return self


def strategy_test_blocks(strategy: str):
    """A strategy's test rows in blocks of BLOCK_ROWS rows: (labels, probabilities as trained)."""
    members = member_columns(strategy)
    for table in exact_batches(split_batches(strategy, "test", ["label", *members]), BLOCK_ROWS):
        yield as_arrays(table, members)


def test_blocks(shifts: dict, values: np.ndarray | None):
    """Every strategy's test rows side by side, block by block: (labels, their cost column values or None,
    {strategy: (calibrated, as trained)})."""
    start = 0
    for blocks in zip(*(strategy_test_blocks(strategy) for strategy in shifts), strict=True):
        labels = blocks[0][0]
        yield (
            labels,
            None if values is None else values[start : start + len(labels)],
            {s: (shift_probabilities(p, shifts[s]), p) for s, (_, p) in zip(shifts, blocks, strict=True)},
        )
        start += len(labels)
