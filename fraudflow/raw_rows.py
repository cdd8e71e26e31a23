"""The raw table's rows of one split, as the split stage divides them: what to score with the exported model to
compare with evaluate (tests/test_export.py, tests/test_pipeline.py, the benchmark's exactness part). Not a stage's
dependency, so changing it reruns nothing.
"""

import numpy as np
import pandas as pd

from fraudflow import inputs
from fraudflow.common import CLEAN_PARQUET, RAW_CSV, SPLITS
from fraudflow.schema import roles_of
from stages import split


def raw_rows(name: str = "test") -> pd.DataFrame:
    """The rows of data/raw/table.csv (in the working directory) that split puts in split `name`, in the split's
    order (the file's), as pandas reads them; split's own functions decide which."""
    clean, settings = inputs.parquet_file(CLEAN_PARQUET, "clean"), split.read_settings()
    roles = roles_of(clean.schema_arrow, CLEAN_PARQUET)
    hashes, labels, times = split.row_state(clean, roles, settings["method"] == "time")
    part = split.split_rows(labels, *split.duplicate_groups(hashes), times, settings)
    raw = pd.read_csv(RAW_CSV, keep_default_na=False, na_values=[""])
    return raw.iloc[np.flatnonzero(part == SPLITS.index(name))]
