"""A dataset's rows as a ``torch.utils.data.Dataset`` (imported only when asked for: torch is
heavy)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset


class ParquetRows(Dataset):
    """Every row of the Parquet files as a dict ``column -> value``: numbers and booleans as
    tensors (timestamps as int64 nanoseconds), text as ``str``. The default collate of a
    ``DataLoader`` batches them into tensors and lists."""

    def __init__(self, files: list[str], columns: list[str] | None = None):
        table = pq.read_table(files[0] if len(files) == 1 else files, columns=columns)
        self.columns: dict[str, object] = {}
        for name in table.column_names:
            col = table[name].combine_chunks()
            kind = col.type
            if pa.types.is_dictionary(kind):
                col = col.cast(kind.value_type)
                kind = col.type
            if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
                values = col.cast(pa.int64()).to_numpy(zero_copy_only=False)
                self.columns[name] = torch.from_numpy(np.ascontiguousarray(values))
            elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or \
                    pa.types.is_boolean(kind):
                values = col.to_numpy(zero_copy_only=False)
                self.columns[name] = torch.from_numpy(np.ascontiguousarray(values))
            else:
                self.columns[name] = col.to_pylist()
        self.n = table.num_rows

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {name: values[i] for name, values in self.columns.items()}
