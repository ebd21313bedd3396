"""Loaders: MovieLens layouts, generic CSV/Parquet files, and the built-in synthetic streams."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from .interactions import CANONICAL_COLUMNS, validate_interactions
from .synthetic import synthetic_stream

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "DatasetSpec",
    "data_home",
    "list_datasets",
    "load_dataset",
    "read_interactions_file",
]

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{archive}"
DEFAULT_DATASET = "synthetic"


class DatasetNotFoundError(FileNotFoundError):
    """A named dataset is not in the data home and could not be downloaded."""


def data_home(path: str | os.PathLike | None = None) -> Path:
    """The folder datasets are read from and downloaded to.

    ``path`` if given, else the ``RECINC_DATA_HOME`` environment variable, else
    ``~/recinc_data``.
    """
    if path is None:
        path = os.environ.get("RECINC_DATA_HOME") or Path.home() / "recinc_data"
    return Path(path).expanduser()


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: where its ratings file sits inside the data home and how to read it."""

    name: str
    description: str
    archive: str | None = None  # GroupLens zip name; None for generated data
    folder: str | None = None  # folder the archive unpacks to
    file: str | None = None  # ratings file inside that folder
    layout: str = "csv"  # "udata" (tab, no header), "dat" ("::", no header) or "csv" (header)
    generate: Callable[[], pd.DataFrame] | None = None

    def path(self, home: Path) -> Path | None:
        if self.folder is None or self.file is None:
            return None
        return home / self.folder / self.file

    def is_present(self, home: Path) -> bool:
        path = self.path(home)
        return self.generate is not None or (path is not None and path.exists())


def _movielens(name: str, description: str, folder: str, file: str, layout: str) -> DatasetSpec:
    return DatasetSpec(name, description, archive=f"{name}.zip", folder=folder, file=file,
                       layout=layout)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("synthetic", "built-in seeded stream: 20,000 explicit ratings, 500 users, "
                    "1,000 items, drifting tastes (the default)", generate=synthetic_stream),
        DatasetSpec("synthetic-implicit", "built-in seeded stream: 20,000 implicit events "
                    "(play counts), 500 users, 1,000 items",
                    generate=lambda: synthetic_stream(feedback="implicit")),
        DatasetSpec("synthetic-1m", "built-in seeded stream at scale: 1,000,000 implicit events, "
                    "500,000 users, 190,000 items (generated in seconds)",
                    generate=partial(synthetic_stream, n_events=1_000_000, n_users=500_000,
                                     n_items=190_000, feedback="implicit", seed=0,
                                     method="sampled")),
        DatasetSpec("synthetic-10m", "built-in seeded stream at scale: 10,000,000 implicit "
                    "events, 1,000,000 users, 200,000 items (generated in about half a "
                    "minute, 1.4 GB peak)",
                    generate=partial(synthetic_stream, n_events=10_000_000, n_users=1_000_000,
                                     n_items=200_000, feedback="implicit", seed=0,
                                     method="sampled")),
        _movielens("ml-100k", "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies",
                   "ml-100k", "u.data", "udata"),
        _movielens("ml-1m", "MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies",
                   "ml-1m", "ratings.dat", "dat"),
        _movielens("ml-10m", "MovieLens 10M: 10,000,054 ratings, 69,878 users, 10,677 movies",
                   "ml-10M100K", "ratings.dat", "dat"),
        _movielens("ml-20m", "MovieLens 20M: 20,000,263 ratings, 138,493 users",
                   "ml-20m", "ratings.csv", "csv"),
        _movielens("ml-25m", "MovieLens 25M: 25,000,095 ratings, 162,541 users",
                   "ml-25m", "ratings.csv", "csv"),
        _movielens("ml-latest-small", "MovieLens latest small: about 100,000 ratings, 610 users",
                   "ml-latest-small", "ratings.csv", "csv"),
        _movielens("ml-latest", "MovieLens latest full: about 33 million ratings",
                   "ml-latest", "ratings.csv", "csv"),
    )
}

_MOVIELENS_COLUMNS = ["user", "item", "rating", "timestamp"]
_CSV_COLUMNS = {"userId": "user", "movieId": "item"}


def list_datasets(home: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per named dataset: name, description, and whether it is available offline."""
    root = data_home(home)
    rows = [
        {"name": s.name, "description": s.description, "present": s.is_present(root),
         "path": str(s.path(root)) if s.path(root) else "(generated)"}
        for s in DATASETS.values()
    ]
    return pd.DataFrame(rows)


def _read_layout(path: Path, layout: str) -> pd.DataFrame:
    if layout == "udata":
        return pd.read_csv(path, sep="\t", header=None, names=_MOVIELENS_COLUMNS,
                           dtype={"user": "int64", "item": "int64"})
    if layout == "dat":
        return pd.read_csv(path, sep="::", header=None, names=_MOVIELENS_COLUMNS,
                           engine="python")
    return pd.read_csv(path).rename(columns=_CSV_COLUMNS)


def _download(spec: DatasetSpec, home: Path, timeout: float) -> None:
    url = GROUPLENS_URL.format(archive=spec.archive)
    home.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.NamedTemporaryFile(dir=home, suffix=".zip", delete=False) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, tmp)
        with zipfile.ZipFile(tmp.name) as archive:
            archive.extractall(home)
    except (urllib.error.URLError, OSError, zipfile.BadZipFile) as exc:
        raise DatasetNotFoundError(
            f"dataset {spec.name!r} is not at {spec.path(home)} and downloading it from {url} "
            f"failed ({exc}). If this machine is offline, download the archive elsewhere and "
            f"unpack it into {home} (or set RECINC_DATA_HOME to the folder holding "
            f"{spec.folder}/)"
        ) from exc
    finally:
        if "tmp" in locals():
            Path(tmp.name).unlink(missing_ok=True)


def _kept_names(
    columns: Mapping[str, str] | None,
    extra_columns: bool | Collection[str],
    aliases: Collection[str] = (),
) -> set[str] | None:
    """The column names a file is read with (before renames); None for every column."""
    if extra_columns is True:
        return None
    keep = set(CANONICAL_COLUMNS) | set(aliases) | set(columns or ())
    if extra_columns is not False:
        keep |= set(extra_columns)
    return keep


def _read_parquet(
    path: Path, columns: Mapping[str, str] | None, extra_columns: bool | Collection[str]
) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:  # another engine pandas knows (fastparquet) reads the whole file
            return pd.read_parquet(path)
        except ImportError as exc:
            raise ImportError(
                "reading Parquet needs pyarrow: pip install 'recinc-plugins[parquet]'"
            ) from exc
    schema = pq.read_schema(path)  # the file's footer: no data read yet
    names = list(schema.names)
    renamed = {(columns or {}).get(name, name) for name in names}
    if any(name not in names for name in (columns or ())) or not {"user", "item"} <= renamed:
        # the validator will refuse it: let it name what is missing against the whole file
        return schema.empty_table().to_pandas()
    keep = _kept_names(columns, extra_columns)
    return pd.read_parquet(path, columns=None if keep is None else
                           [name for name in names if name in keep])


def read_interactions_file(
    path: str | os.PathLike,
    *,
    columns: Mapping[str, str] | None = None,
    sep: str | None = None,
    extra_columns: bool | Collection[str] = True,
    **validate: Any,
) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file (or a MovieLens folder) into the canonical frame.

    CSV files need a header row; MovieLens names (``userId``, ``movieId``) are recognised, other
    names are mapped with ``columns``. A folder is read as a MovieLens folder holding
    ``u.data``, ``ratings.dat`` or ``ratings.csv``.

    Columns other than ``user``, ``item``, ``rating``, ``weight`` and ``timestamp`` (after the
    ``columns`` renames) pass through as side information when ``extra_columns`` is true (the
    default); ``extra_columns=False`` reads only the canonical columns and the ones ``columns``
    names, and a collection of names keeps those extra columns as well. Parquet files are read
    by columns (``pd.read_parquet(path, columns=...)`` after a look at the file's schema), so
    the columns left out of a wide file are never loaded; CSV files skip them while parsing.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import pandas as pd
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name) / "events.parquet"
    >>> pd.DataFrame({"uid": [1, 2], "sku": [10, 11], "plays": [3.0, 1.0],
    ...               "country": ["fr", "de"], "blob": ["x" * 100, "y" * 100]}).to_parquet(path)
    >>> names = {"uid": "user", "sku": "item", "plays": "weight"}
    >>> read_interactions_file(path, columns=names).columns.tolist()
    ['user', 'item', 'weight', 'country', 'blob']
    >>> read_interactions_file(path, columns=names, extra_columns=["country"]).columns.tolist()
    ['user', 'item', 'weight', 'country']
    >>> read_interactions_file(path, columns=names, extra_columns=False).columns.tolist()
    ['user', 'item', 'weight']
    >>> tmp.cleanup()
    """
    if not (isinstance(extra_columns, bool) or (isinstance(extra_columns, Collection)
                                                and not isinstance(extra_columns, str))):
        raise TypeError(
            "extra_columns must be True, False or a collection of column names, got "
            f"{extra_columns!r}"
        )
    path = Path(path).expanduser()
    if path.is_dir():
        for name, layout in (("u.data", "udata"), ("ratings.dat", "dat"), ("ratings.csv", "csv")):
            if (path / name).exists():
                return validate_interactions(_read_layout(path / name, layout), columns=columns,
                                             **validate)
        raise DatasetNotFoundError(
            f"{path} is a folder without u.data, ratings.dat or ratings.csv in it"
        )
    if not path.exists():
        raise DatasetNotFoundError(f"no file at {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = _read_parquet(path, columns, extra_columns)
    elif suffix == ".data" and sep is None:
        frame = _read_layout(path, "udata")
    elif suffix == ".dat" and sep is None:
        frame = _read_layout(path, "dat")
    elif suffix in (".csv", ".tsv", ".txt", ".dat", ".data"):
        keep = _kept_names(columns, extra_columns, _CSV_COLUMNS if columns is None else ())
        frame = pd.read_csv(path, sep=sep or ("\t" if suffix == ".tsv" else ","),
                            engine="python" if sep and len(sep) > 1 else "c",
                            usecols=None if keep is None else keep.__contains__)
        if columns is None:
            frame = frame.rename(columns=_CSV_COLUMNS)
    else:
        raise ValueError(
            f"cannot read {path}: expected .csv, .tsv, .parquet, a MovieLens .data/.dat file or "
            f"a MovieLens folder (got suffix {suffix!r})"
        )
    return validate_interactions(frame, columns=columns, **validate)


def load_dataset(
    name_or_path: str | os.PathLike = DEFAULT_DATASET,
    *,
    home: str | os.PathLike | None = None,
    download: bool = True,
    timeout: float = 60.0,
    **kwargs: Any,
) -> pd.DataFrame:
    """Load a named dataset (see :func:`list_datasets`) or a file/folder into the canonical frame.

    Named MovieLens datasets are read from the data home (see :func:`data_home`); when missing
    and ``download`` is true they are downloaded from GroupLens and unpacked there first.
    Extra keyword arguments go to :func:`read_interactions_file` for paths.

    Examples
    --------
    >>> from recinc_plugins.data import load_dataset
    >>> df = load_dataset("synthetic")
    >>> len(df), df["user"].nunique() <= 500
    (20000, True)
    """
    name = str(name_or_path)
    spec = DATASETS.get(name)
    if spec is None:
        path = Path(name).expanduser()
        if path.exists():
            return read_interactions_file(path, **kwargs)
        raise DatasetNotFoundError(
            f"{name!r} is neither a known dataset ({', '.join(DATASETS)}) nor an existing path"
        )
    kwargs.pop("extra_columns", None)  # named datasets carry the canonical columns only
    if spec.generate is not None:
        return validate_interactions(spec.generate(), **kwargs)
    root = data_home(home)
    path = spec.path(root)
    assert path is not None
    if not path.exists():
        if not download:
            raise DatasetNotFoundError(
                f"dataset {name!r} is not at {path} and download=False"
            )
        _download(spec, root, timeout)
    if not path.exists():
        raise DatasetNotFoundError(
            f"the {spec.name!r} archive was unpacked into {root} but has no {spec.folder}/"
            f"{spec.file}; remove what it left there and try again"
        )
    return validate_interactions(_read_layout(path, spec.layout), **kwargs)
