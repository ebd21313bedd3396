"""Model files: one versioned file per model, read back by ``recinc_plugins.load``.

A file is an 8-byte magic, the format version and a JSON header (the model's class, library
versions, payload length and SHA-256), then a pickle payload holding the constructor
parameters and the learned state (``_get_state``, restored by ``_set_state``). The payload is
a pickle: load only files you trust.

Examples
--------
>>> import os, tempfile
>>> import pandas as pd
>>> import recinc_plugins
>>> model = recinc_plugins.Popularity().fit(pd.DataFrame({"user": [1, 2], "item": [5, 5]}))
>>> path = os.path.join(tempfile.mkdtemp(), "popularity.recinc")
>>> model.save(path)
>>> recinc_plugins.load(path).recommend(3, k=1).items
array([[5]])
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import pickle
import platform
import struct
import sys
from typing import Any

__all__ = ["FORMAT_VERSION", "ModelFileError", "load_model", "save_model"]

FORMAT_VERSION = 1
_MAGIC = b"RECINC\x00M"
_PREFIX = struct.Struct("<8sII")  # magic, format version, header length


class ModelFileError(ValueError):
    """A saved model file is not one, is truncated or corrupt, or is incompatible."""


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` (parameters, learned state, id maps) to ``path``, all at once: a
    temporary file beside it is renamed over it, so a reader never sees part of one."""
    payload = pickle.dumps(
        {"params": model.get_params(), "state": model._get_state()},
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    header = json.dumps({
        "format": FORMAT_VERSION,
        "class": f"{type(model).__module__}:{type(model).__qualname__}",
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "python": platform.python_version(),
        "versions": _library_versions(),
    }).encode()
    tmp = f"{os.fspath(path)}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(_PREFIX.pack(_MAGIC, FORMAT_VERSION, len(header)))
            fh.write(header)
            fh.write(payload)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_model(path: str | os.PathLike, cls: type) -> Any:
    """Read a model written by :func:`save_model` that must be a ``cls``; parameters saved
    under an earlier name (the class's ``_renamed_params``) are given their current name."""
    with open(path, "rb") as fh:
        data = fh.read()
    where = os.fspath(path)
    if len(data) < _PREFIX.size or data[:8] != _MAGIC:
        raise ModelFileError(f"{where} is not a recinc-plugins model file (no header)")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where} was written in model format {version}; this recinc-plugins reads up "
            f"to format {FORMAT_VERSION} (upgrade recinc-plugins)"
        )
    start = _PREFIX.size + header_len
    if len(data) < start:
        raise ModelFileError(f"{where} is truncated: its header is cut short")
    try:
        header = json.loads(data[_PREFIX.size:start])
    except ValueError as exc:
        raise ModelFileError(f"{where} is corrupt: unreadable header ({exc})") from exc
    payload = data[start:]
    expected = header.get("payload_bytes", -1)
    if len(payload) != expected:
        raise ModelFileError(
            f"{where} is truncated or has trailing bytes: header says {expected} payload "
            f"bytes, the file has {len(payload)}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ModelFileError(f"{where} is corrupt: payload checksum does not match")
    if not isinstance(header, dict) or not isinstance(header.get("class"), str):
        raise ModelFileError(f"{where} is corrupt: its header names no model class")
    module_name, _, qualname = header["class"].partition(":")
    try:
        target = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ModelFileError(
            f"{where} holds a {header['class']} model, which cannot be imported here ({exc})"
        ) from exc
    if not (isinstance(target, type) and issubclass(target, cls)):
        raise ModelFileError(f"{where} holds a {header['class']}, not a {cls.__name__}")
    try:
        content = pickle.load(io.BytesIO(payload))
    except Exception as exc:
        raise ModelFileError(
            f"{where} could not be unpickled ({type(exc).__name__}: {exc}); it was written "
            f"with {header.get('versions')}"
        ) from exc
    params = dict(content["params"])
    for old, new in getattr(target, "_renamed_params", {}).items():
        if old in params and new not in params:
            params[new] = params.pop(old)
    if "cold_start" in target._param_names() and "cold_start" not in params:
        # written before the shared cold-start policies: it answered with popularity
        params["cold_start"] = "popularity"
    try:
        model = target(**params)
    except TypeError as exc:
        raise ModelFileError(
            f"{where} holds a {header['class']} with parameters this version does not "
            f"take ({exc}); it was written with {header.get('versions')}"
        ) from exc
    model._set_state(content["state"])
    return model


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in ("recinc_plugins", "numpy", "scipy", "pandas", "lightfm", "implicit", "surprise",
                 "river", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "?"))
    return versions
