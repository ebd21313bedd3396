"""The canonical interactions frame, and the one validator that produces it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CANONICAL_COLUMNS",
    "InteractionsError",
    "validate_interactions",
]

CANONICAL_COLUMNS = ("user", "item", "rating", "weight", "timestamp")
_DUPLICATE_POLICIES = ("keep", "first", "last", "sum")
_MAX_SHOWN = 10


class InteractionsError(ValueError):
    """Raised when an interactions table cannot be turned into the canonical schema.

    ``column`` names the offending column and ``rows`` holds the 0-based positions of the
    offending rows in the frame the caller passed (all of them, not only the ones shown).
    """

    def __init__(self, message: str, *, column: str | None = None, rows: Any = None) -> None:
        super().__init__(message)
        self.column = column
        self.rows = np.asarray(rows if rows is not None else [], dtype=np.int64)


def _positions(mask: np.ndarray) -> tuple[np.ndarray, str]:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:_MAX_SHOWN])
    more = f" and {rows.size - _MAX_SHOWN} more" if rows.size > _MAX_SHOWN else ""
    return rows, f"{rows.size} row(s) at positions {shown}{more}"


def _fail(column: str, mask: np.ndarray, what: str) -> None:
    rows, where = _positions(mask)
    raise InteractionsError(f"column {column!r}: {what} in {where}", column=column, rows=rows)


def _to_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        return pd.DataFrame(dict(data))
    if isinstance(data, np.ndarray) and data.dtype.names:
        return pd.DataFrame.from_records(data)
    raise TypeError(
        "interactions must be a pandas DataFrame (or a mapping of column name -> values) with "
        f"columns 'user' and 'item', got {type(data).__name__}"
    )


def _check_ids(frame: pd.DataFrame, column: str) -> pd.Series:
    values = frame[column]
    null = values.isna().to_numpy()
    if null.any():
        _fail(column, null, "null ids")
    if values.dtype.kind in "fu":
        raw = values.to_numpy()
        if values.dtype.kind == "f":
            frac = (raw % 1) != 0
            if frac.any():
                _fail(column, frac, "non-integer float ids (pass ids as int or str)")
        too_big = np.abs(raw.astype(np.float64)) >= 2.0**63
        if values.dtype.kind == "u":
            too_big = raw > np.iinfo(np.int64).max
        if too_big.any():
            _fail(column, too_big, "integer ids beyond the int64 range (pass them as str)")
        return values.astype(np.int64)
    if values.dtype.kind == "i":
        return values.astype(np.int64)
    return values.astype(object)


def _check_values(frame: pd.DataFrame, column: str,
                  among: np.ndarray | None = None) -> np.ndarray:
    """``column`` as float64, or an InteractionsError naming the rows that are not finite
    numbers (only the rows where ``among`` is True are checked, when it is given)."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if among is not None:
        bad &= among
    if bad.any():
        _fail(column, bad, "non-numeric, missing or non-finite values")
    return values


def _check_timestamps(frame: pd.DataFrame, time_format: str | None = None) -> np.ndarray:
    raw = frame["timestamp"]
    if time_format is not None and not isinstance(time_format, str):
        raise ValueError(f"time_format must be a strptime format such as '%d/%m/%Y' or "
                         f"'ISO8601', got {time_format!r}")
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        if time_format is not None:
            raise ValueError(f"time_format={time_format!r} is for text timestamps; column "
                             "'timestamp' holds numbers, read as Unix seconds")
        seconds = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(seconds)
        if bad.any():
            _fail("timestamp", bad, "missing or non-finite timestamps")
        parsed = pd.to_datetime(pd.Series(seconds), unit="s", errors="coerce")
        if parsed.isna().any():
            _fail("timestamp", parsed.isna().to_numpy(),
                  "numbers out of range as Unix seconds (milliseconds or nanoseconds? convert "
                  "them to seconds or datetimes first)")
    else:
        parsed = _parse_text_timestamps(raw, time_format).dt.tz_localize(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        _fail("timestamp", bad, "unparseable timestamps")
    return parsed.to_numpy(dtype="datetime64[ns]")


#: the first values a column's timestamp format is inferred from
_FORMAT_SAMPLE = 1000


def _parse_text_timestamps(raw: pd.Series, time_format: str | None) -> pd.Series:
    """Text timestamps read in one format for the whole column: ``time_format``, or the
    format inferred from the column's first values (ISO 8601 in any of its forms counts as
    one format); a value in another format (``13/02/2024`` in a month-first column) or none
    is an error naming its rows. Never a value read one way and the next another way."""
    values = raw.to_numpy(dtype=object, na_value=None)
    text = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=values.size)
    present = np.fromiter((v is not None for v in values), dtype=bool, count=values.size)
    if not text.any():  # datetime objects (of several time zones, say): no format to read
        return pd.to_datetime(raw, errors="coerce", utc=True)
    if (present & ~text).any():
        _fail("timestamp", present & ~text, "values that are not text among text timestamps")
    series = pd.Series(values, index=raw.index, dtype=object)
    given = time_format is not None
    fmt = time_format if given else _infer_time_format(values[text][:_FORMAT_SAMPLE])
    if fmt is None:
        parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    else:
        try:
            parsed = pd.to_datetime(series, format=fmt, errors="coerce", utc=True)
        except ValueError as exc:  # a format pandas cannot use
            raise ValueError(f"time_format={fmt!r} is not a usable format ({exc})") from exc
    bad = parsed.isna().to_numpy() & text
    if bad.any() and fmt is not None:
        # values that some other format reads: the column mixes formats
        other = pd.to_datetime(series[bad], format="mixed", errors="coerce", utc=True)
        if other.notna().any():
            first = values[text][0]
            where = ("given as time_format" if given else
                     f"inferred from the column's first values, such as {first!r}")
            _fail("timestamp", bad, f"timestamps not in the column's format {fmt!r} ({where}; "
                                    "pass time_format (--time-format) to read another)")
    return parsed


def _infer_time_format(sample: np.ndarray) -> str | None:
    """The one format all of ``sample`` (a column's first text timestamps) is in: of the
    formats its first value may be in (month or day first), the first that reads every
    value of the sample, else the month-first one; ISO 8601 dates for ``%Y-%m-%d...``."""
    import warnings

    from pandas.tseries.api import guess_datetime_format

    if sample.size == 0:
        return None
    first = sample[0].strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guesses = [guess_datetime_format(first, dayfirst=dayfirst) for dayfirst in (False, True)]
    candidates = list(dict.fromkeys(g for g in guesses if g))
    if not candidates:
        return None
    if candidates[0].startswith(("%Y-%m-%d", "%Y%m%d")):
        return "ISO8601"
    for fmt in candidates:
        if pd.to_datetime(pd.Series(sample), format=fmt, errors="coerce").notna().all():
            return fmt
    return candidates[0]


def validate_interactions(
    data: Any,
    *,
    columns: Mapping[str, str] | None = None,
    rating_scale: tuple[float, float] | None = None,
    duplicates: str = "keep",
    require_timestamp: bool = False,
    time_format: str | None = None,
) -> pd.DataFrame:
    """Turn ``data`` into the canonical interactions frame, or raise naming what is wrong.

    The canonical frame has columns ``user`` and ``item`` (ids: int64 or object), then
    ``rating`` (explicit feedback) or ``weight`` (implicit strength) as float64, then an optional
    ``timestamp`` (``datetime64[ns]``, naive UTC; numbers are read as Unix seconds, text in one
    format for the whole column), then any other columns the caller passed, unchanged. Rows
    keep their order and count.

    Parameters
    ----------
    data
        A DataFrame, or a mapping of column name to values.
    columns
        Renames applied first, from the caller's names to canonical ones,
        e.g. ``{"userId": "user", "movieId": "item"}``.
    rating_scale
        ``(low, high)``: ratings outside it are an error.
    duplicates
        What to do with repeated ``(user, item)`` pairs: ``"keep"`` them as separate events
        (the default), keep the ``"first"`` or ``"last"``, or ``"sum"`` their weights into one
        event at the first occurrence (implicit feedback only).
    require_timestamp
        Raise if there is no ``timestamp`` column.
    time_format
        The format of text timestamps (``"%d/%m/%Y"``, ``"ISO8601"``); by default inferred
        from the column's first values. Either way every value must be in it: a column where
        ``01/02/2024`` would be read month first and ``13/02/2024`` day first is an error
        naming the rows, not a silent mix.

    Raises
    ------
    InteractionsError
        With ``.column`` and ``.rows`` (0-based positions in ``data``) set.

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.data import validate_interactions
    >>> raw = pd.DataFrame({"uid": ["a", "b"], "iid": [10, 11], "stars": [4, 5]})
    >>> validate_interactions(raw, columns={"uid": "user", "iid": "item", "stars": "rating"})
      user  item  rating
    0    a    10     4.0
    1    b    11     5.0
    >>> validate_interactions(raw.assign(stars=[4, 9]), rating_scale=(1, 5),
    ...                       columns={"uid": "user", "iid": "item", "stars": "rating"})
    Traceback (most recent call last):
    ...
    recinc_plugins.data.interactions.InteractionsError: column 'rating': values outside the
    rating scale [1, 5] in 1 row(s) at positions 1
    """
    frame = _to_frame(data)
    if columns:
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            raise InteractionsError(
                f"columns mapping names {unknown}, which the data does not have "
                f"(it has {list(frame.columns)})",
                column=str(unknown[0]),
            )
        targets = list(columns.values())
        clash = {t for t in targets if targets.count(t) > 1}
        if clash:
            raise InteractionsError(f"columns mapping maps several columns onto {sorted(clash)}")
        frame = frame.rename(columns=dict(columns))
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()].tolist()
        raise InteractionsError(f"duplicate column names {dup}", column=str(dup[0]))
    missing = [c for c in ("user", "item") if c not in frame.columns]
    if missing:
        raise InteractionsError(
            f"missing required column(s) {missing}; the data has {list(frame.columns)} "
            "(pass columns={'your_name': 'user', ...} to map names)",
            column=missing[0],
        )
    if "rating" in frame.columns and "weight" in frame.columns:
        raise InteractionsError(
            "both 'rating' and 'weight' columns given: use 'rating' for explicit feedback or "
            "'weight' for implicit strength, not both",
            column="weight",
        )
    if require_timestamp and "timestamp" not in frame.columns:
        raise InteractionsError(
            f"a 'timestamp' column is required; the data has {list(frame.columns)}",
            column="timestamp",
        )
    if duplicates not in _DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {_DUPLICATE_POLICIES}, got {duplicates!r}")

    out: dict[str, Any] = {
        "user": _check_ids(frame, "user").to_numpy(),
        "item": _check_ids(frame, "item").to_numpy(),
    }
    if "rating" in frame.columns:
        ratings = _check_values(frame, "rating")
        if rating_scale is not None:
            low, high = rating_scale
            if not low < high:
                raise ValueError(
                    f"rating_scale must be (low, high) with low < high, got {rating_scale}"
                )
            outside = (ratings < low) | (ratings > high)
            if outside.any():
                _fail("rating", outside, f"values outside the rating scale [{low:g}, {high:g}]")
        out["rating"] = ratings
    if "weight" in frame.columns:
        out["weight"] = _check_values(frame, "weight")
    if "timestamp" in frame.columns:
        out["timestamp"] = _check_timestamps(frame, time_format)
    result = pd.DataFrame(out)
    extras = [c for c in frame.columns if c not in CANONICAL_COLUMNS]
    for column in extras:
        result[column] = frame[column].to_numpy()
    if duplicates != "keep":
        result = _apply_duplicates(result, duplicates)
    return result


def _apply_duplicates(frame: pd.DataFrame, policy: str) -> pd.DataFrame:
    if policy == "sum":
        if "rating" in frame.columns:
            raise InteractionsError(
                "duplicates='sum' adds up implicit weights; the data has explicit 'rating' "
                "values (use 'first' or 'last')",
                column="rating",
            )
        if "weight" not in frame.columns:
            frame = frame.assign(weight=1.0)
        keys = ["user", "item"]
        totals = frame.groupby(keys, sort=False, dropna=False)["weight"].transform("sum")
        first = ~frame.duplicated(keys, keep="first")
        return frame.assign(weight=totals)[first].reset_index(drop=True)
    keep = ~frame.duplicated(["user", "item"], keep=policy)
    return frame[keep].reset_index(drop=True)


def feedback_kind(frame: pd.DataFrame) -> str:
    """``"explicit"`` when the canonical frame has ratings, else ``"implicit"``."""
    return "explicit" if "rating" in frame.columns else "implicit"
