"""The scaled splits as the training and evaluation stages read them, in bounded memory: features row range by
row range from their memory-mapped .npy files, negative samples of the training rows, and predictions files
written block by block."""

import math
import mmap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fraudflow.common import SCALED_DIR, StageError, is_int, is_number, load_params, require
from fraudflow.inputs import batch_rows, exact_batches
from fraudflow.outputs import write_tables

RANGE_BYTES = 1 << 24  # NpyRows.take reads its file in ranges of 16 MiB, letting each go once read
PREDICTED_SPLITS = ("val", "test")
SAMPLE_STREAM = 1  # member m's negative sample is seeded by (train.seed, SAMPLE_STREAM, m), apart from its weights
VALIDATION_STREAM = 2  # the validation split's fixed sample by (train.seed, VALIDATION_STREAM)
MAX_MEMBERS = 64  # train.members: members per strategy


class NpyRows:
    """The rows of a .npy array on demand, read through a memory map whose pages are let go after every read, so
    the process holds no more of the file than one read needs (the page cache keeps it for the next read)."""

    def __init__(self, path):
        try:
            header = np.load(path, mmap_mode="r")  # a numpy.memmap: its shape, dtype and where the rows start
            with open(path, "rb") as file:
                self.map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:
            raise StageError(f"{path}: cannot read ({error}); run 'dvc repro scale'") from error
        self.shape, self.dtype, self.offset = header.shape, header.dtype, header.offset
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:]))
        self.array = np.ndarray(self.shape, self.dtype, buffer=self.map, offset=self.offset)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    def rows(self, start: int, stop: int) -> np.ndarray:
        """A copy of rows start..stop-1."""
        block = np.array(self.array[start:stop])
        self._release(start, stop)
        return block

    def take(self, indices: np.ndarray) -> np.ndarray:
        """A copy of the rows at `indices` (any order, repeats allowed), read range by range in file order."""
        step = max(1, RANGE_BYTES // max(self.row_bytes, 1))
        ranges = indices // step
        small = ranges.astype(np.uint16) if len(self) // step < 1 << 16 else ranges  # numpy radix-sorts 16 bits
        order = np.argsort(small, kind="stable")
        counts = np.bincount(ranges, minlength=len(self) // step + 1)
        ends = np.cumsum(counts)
        result = np.empty((len(indices), *self.shape[1:]), self.dtype)
        for number in np.flatnonzero(counts):  # the ranges holding any of the rows
            rows = order[ends[number] - counts[number] : ends[number]]
            result[rows] = self.array[indices[rows]]
            self._release(number * step, (number + 1) * step)
        return result

    def _release(self, start: int, stop: int):
        begin = (self.offset + start * self.row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        end = min(self.offset + stop * self.row_bytes, len(self.map))
        if end > begin:
            self.map.madvise(mmap.MADV_DONTNEED, begin, end - begin)


def features_file(split: str):
    return SCALED_DIR / f"{split}_features.npy"


def load_labels(split: str) -> np.ndarray:
    """Labels (int8) of one scaled split."""
    try:
        return np.load(SCALED_DIR / f"{split}_labels.npy")
    except OSError as error:
        raise StageError(f"{SCALED_DIR}: cannot read the '{split}' labels ({error}); run 'dvc repro scale'") from error


def negative_sample(labels: np.ndarray, rate: float, key: list[int]) -> np.ndarray:
    """Sorted row indices: every positive and round(rate * negatives) negatives drawn without replacement by a
    generator seeded with `key`; every row when rate is 1."""
    if rate == 1:
        return np.arange(len(labels))
    negatives = np.flatnonzero(labels == 0)
    keep = round(rate * len(negatives))
    chosen = np.random.default_rng(key).choice(len(negatives), keep, replace=False, shuffle=False)
    return np.sort(np.r_[np.flatnonzero(labels == 1), negatives[chosen]])


def member_seed(seed: int, member: int) -> int:
    """A seed of its own for each member, derived from train.seed."""
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0])


def member_sample(labels: np.ndarray, rate: float, seed: int, member: int) -> np.ndarray:
    """Member `member`'s training rows (sorted): every positive and its own sample of the negatives."""
    return negative_sample(labels, rate, [seed, SAMPLE_STREAM, member])


def validation_sample(labels: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """The validation rows early stopping scores: every positive and a fixed sample of the negatives at the same
    rate, the same for every member and epoch (every row when rate is 1)."""
    return negative_sample(labels, rate, [seed, VALIDATION_STREAM])


def train_seed() -> int:
    """train.seed: every strategy's members, samples and draws derive from it."""
    return require(load_params("train"), "train", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0")


def train_members() -> int:
    """train.members: the members of every strategy that has them (the networks', the trees')."""
    return require(
        load_params("train"),
        "train",
        "members",
        lambda v: is_int(v) and 0 < v <= MAX_MEMBERS,
        f"an integer in 1..{MAX_MEMBERS}",
    )


def negative_rate() -> float:
    """train.negative_rate: the share of the training split's negatives each model trains on, in (0, 1]."""
    params = load_params("train")
    return require(params, "train", "negative_rate", lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]")


def check_negative_rate(labels: np.ndarray, rate: float):
    """Fails when the rate keeps fewer negatives than the training split has positives."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if round(rate * negatives) < positives:
        minimum = positives / negatives
        decimals = 1 - math.floor(math.log10(minimum))  # two significant digits, rounded up
        enough = math.ceil(minimum * 10**decimals - 1e-9) / 10**decimals
        raise StageError(
            f"params.yaml: param 'train.negative_rate' {rate:g} keeps {round(rate * negatives):,} of the training "
            f"split's {negatives:,} negatives, fewer than its {positives:,} positives; use at least {enough:g}"
        )


def id_blocks(split: str, rows: int):
    """The data.ids columns of one split as tables of `rows` rows, or None when the table has no ids."""
    path = SCALED_DIR / f"{split}_ids.parquet"
    if not path.exists():
        return None
    return exact_batches(pq.ParquetFile(path).iter_batches(batch_size=rows), rows)


def prediction_table(split: str, labels: np.ndarray, probabilities: np.ndarray, ids: pa.Table | None) -> pa.Table:
    """Rows of a predictions file: the ids (if any), split, label and each member's probability, member_<i> (as
    trained: evaluate calibrates them and takes their mean)."""
    columns = {name: ids[name] for name in ids.column_names} if ids is not None else {}
    columns |= {
        "split": pa.array([split] * len(labels), pa.string()),
        "label": pa.array(labels),
    }
    columns |= {f"member_{i}": pa.array(probabilities[:, i]) for i in range(probabilities.shape[1])}
    return pa.table(columns)


def write_predictions(path, predict):
    """The predictions file of the val and test splits: `predict` maps a block of features to (rows, members)
    probabilities; blocks of FRAUDFLOW_BATCH_ROWS rows, so memory holds one block."""
    rows = batch_rows()

    def tables():
        for split in PREDICTED_SPLITS:
            features, labels = NpyRows(features_file(split)), load_labels(split)
            ids = id_blocks(split, rows)
            for start in range(0, len(labels), rows):
                stop = min(start + rows, len(labels))
                block_ids = next(ids) if ids is not None else None
                yield prediction_table(split, labels[start:stop], predict(features.rows(start, stop)), block_ids)

    write_tables(path, tables())
