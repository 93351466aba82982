"""Precomputed image features on disk: a raw float32 memmap plus a json index (3DGP's format).

`X.memmap` holds N rows of C float32 values, nothing else; `X_desc.json` beside it (the name with
`.memmap` replaced by `_desc.json`) says

    {"shape": [N, C], "filepath_to_idx": {"<image path relative to the dataset root>": row, ...}}

which is what 3DGP's training reads, so files made by either tool work with both. trigan adds
"dtype" and "dataset" (the dataset's name, the prefix its paths may carry inside a zip).

Lookup is by image name: an exact relative path first, otherwise the path without its extension
and without a leading "<dataset name>/" on either side (so features extracted from a folder serve
the zip packed from it, and a resize that turned .jpg into .png keeps them). Mirrored dataset
items use the row of their source image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np

from trigan.core.atomic import atomic_path, atomic_write_text
from trigan.core.errors import TriganError
from trigan.training.dataset import dataset_name, match_key

DTYPE = np.float32


class FeatureStoreError(TriganError):
    """A features file that cannot be used; the message names it."""


def desc_path(path: Union[str, Path]) -> Path:
    """The json index beside a memmap: X.memmap -> X_desc.json (other names: NAME -> NAME_desc.json)."""
    path = Path(path)
    stem = path.stem if path.suffix == ".memmap" else path.name
    return path.with_name(stem + "_desc.json")


class FeatureStoreWriter:
    """Fill a features file row by row (extraction streams batches; N x C may exceed memory).

    The rows go to a temporary file beside the target; `close()` renames it into place and then
    writes the index, so an interrupted extraction leaves any previous file untouched.
    """

    def __init__(self, path: Union[str, Path], names: Sequence[str], dim: int, dataset: str = ""):
        if not names:
            raise FeatureStoreError(f"{path}: no images to store features for")
        if len(set(names)) != len(names):
            raise FeatureStoreError(f"{path}: image names must be unique")
        self.path, self.names, self.dim, self.dataset = Path(path), list(names), int(dim), dataset
        self._ctx = atomic_path(self.path)
        try:
            self._tmp = self._ctx.__enter__()
            self._rows = np.memmap(self._tmp, dtype=DTYPE, mode="w+", shape=(len(self.names), self.dim))
        except OSError as exc:   # an unwritable or missing folder, a full disk: name the target, not the temporary
            self._ctx.__exit__(type(exc), exc, None)
            raise FeatureStoreError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self._written = np.zeros(len(self.names), dtype=bool)
        self._finished = False

    def write(self, start: int, features: np.ndarray) -> None:
        features = np.asarray(features, dtype=DTYPE)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise FeatureStoreError(f"{self.path}: expected features [n, {self.dim}], got {list(features.shape)}")
        self._rows[start:start + len(features)] = features
        self._written[start:start + len(features)] = True

    def close(self) -> Path:
        if not self._written.all():
            missing = int((~self._written).sum())
            self.abort()
            raise FeatureStoreError(f"{self.path}: {missing} of {len(self.names)} rows were never written")
        try:
            self._rows.flush()
            del self._rows
            self._finished = True
            self._ctx.__exit__(None, None, None)
            index = {"shape": [len(self.names), self.dim], "dtype": "float32", "dataset": self.dataset,
                     "filepath_to_idx": {name: i for i, name in enumerate(self.names)}}
            atomic_write_text(desc_path(self.path), json.dumps(index))
        except OSError as exc:   # disk full while flushing or renaming: the previous file stays as it was
            if not self._finished:
                self.abort()
            raise FeatureStoreError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; the target stays as it was (a no-op once closed or aborted)."""
        if self._finished:
            return
        self._finished = True
        del self._rows
        error = FeatureStoreError("aborted")
        self._ctx.__exit__(FeatureStoreError, error, None)   # removes the temporary file


def write_feature_store(path: Union[str, Path], names: Sequence[str], features: np.ndarray,
                        dataset: str = "") -> Path:
    """Write features [N, C] for the images `names` (row i belongs to names[i]) in one go."""
    features = np.asarray(features, dtype=DTYPE)
    if features.ndim != 2 or features.shape[0] != len(names):
        raise FeatureStoreError(f"{path}: {len(names)} names but features of shape {list(features.shape)}")
    writer = FeatureStoreWriter(path, names, features.shape[1], dataset)
    writer.write(0, features)
    return writer.close()


class FeatureStore:
    """A features file opened read-only (memory-mapped: rows are read from disk when indexed)."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        index_path = desc_path(self.path)
        if not self.path.is_file():
            raise FeatureStoreError(f"{self.path}: no such features file (make one with `trigan dataset features`)")
        if not index_path.is_file():
            raise FeatureStoreError(f"{index_path}: missing; it is the index of {self.path.name} "
                                    f"(written beside it by `trigan dataset features`)")
        try:
            desc = json.loads(index_path.read_text())
            shape = [int(v) for v in desc["shape"]]
            table: Dict[str, int] = {str(k): int(v) for k, v in desc["filepath_to_idx"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FeatureStoreError(f"{index_path}: expected {{\"shape\": [N, C], \"filepath_to_idx\": {{path: row}}}} "
                                    f"({type(exc).__name__}: {str(exc)[:80]})") from None
        if len(shape) != 2 or min(shape) < 1:
            raise FeatureStoreError(f"{index_path}: shape {shape} is not [N, C] with N, C >= 1")
        if desc.get("dtype", "float32") != "float32":
            raise FeatureStoreError(f"{index_path}: dtype {desc['dtype']!r}; only float32 is supported")
        expected = shape[0] * shape[1] * np.dtype(DTYPE).itemsize
        actual = self.path.stat().st_size
        if actual != expected:
            raise FeatureStoreError(f"{self.path}: {actual} bytes, but {index_path.name} says {shape[0]} x {shape[1]} "
                                    f"float32 = {expected} bytes")
        bad = [k for k, v in table.items() if not 0 <= v < shape[0]]
        if bad:
            raise FeatureStoreError(f"{index_path}: row {table[bad[0]]} of '{bad[0]}' is outside 0..{shape[0] - 1}")
        self.num, self.dim = shape
        self.dataset: str = str(desc.get("dataset") or "")
        self.index = table
        self.features = np.memmap(self.path, dtype=DTYPE, mode="r", shape=(self.num, self.dim))

    def row(self, name: str) -> int:
        return self.rows_for([name])[0]

    def rows_for(self, names: Iterable[str], prefix: str = "") -> np.ndarray:
        """Rows [len(names)] of the images `names` (paths relative to a dataset whose name is
        `prefix`); a FeatureStoreError names the first image without features."""
        names = list(names)
        loose: Optional[Dict[str, int]] = None
        rows, missing = [], []
        for name in names:
            row = self.index.get(name)
            if row is None:
                if loose is None:
                    loose = {match_key(k, self.dataset): v for k, v in self.index.items()}
                row = loose.get(match_key(name, prefix))
            if row is None:
                missing.append(name)
                row = -1
            rows.append(row)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FeatureStoreError(f"{self.path}: no features for image '{missing[0]}'{more}; extract them from "
                                    f"this dataset with `trigan dataset features`")
        return np.asarray(rows, dtype=np.int64)

    def rows_for_dataset(self, dataset) -> np.ndarray:
        """Rows for every image of an ImageDataset, in its `names` order (unmirrored indices)."""
        return self.rows_for(dataset.names, dataset_name(dataset.path))

    def read(self, rows: Sequence[int]) -> np.ndarray:
        """Features [len(rows), C] as a float32 array in memory."""
        return np.array(self.features[np.asarray(rows, dtype=np.int64)], dtype=DTYPE)


class DatasetFeatures:
    """The features of an ImageDataset's items: item i of a mirrored dataset (i >= N is image
    i - N flipped) gets the features of its source image i mod N."""

    def __init__(self, store: FeatureStore, dataset):
        self.store = store
        self.rows = store.rows_for_dataset(dataset)
        self.num_images = len(dataset.names)

    @property
    def dim(self) -> int:
        return self.store.dim

    def __call__(self, item_indices) -> np.ndarray:
        """Features [len(item_indices), C] (float32) of dataset items."""
        items = np.asarray(item_indices, dtype=np.int64)
        return self.store.read(self.rows[items % self.num_images])
