"""Audit a saved model file for traces of forgotten users and items, without loading the model.

``audit_model(path, users=[...], items=[...])`` answers a data-protection officer's question,
"does this file still hold anything of these ids?", for a file written by ``model.save``
(model format 2: a JSON tree and a NumPy archive, see ``docs/security.md``). It never builds the
model and never runs code from the file: the JSON tree is walked as data, the arrays are read
with ``allow_pickle=False``, and the one restricted pickle some models need (River's and
Surprise's dicts) is read by the same unpickler ``load`` uses, which resolves every class
through the allow-list and refuses anything else before importing it. A file that is not a
model file, is damaged, or names a type off the allow-list is a
:class:`~recinc_plugins.persistence.ModelFileError`.

Where it looks, per id (``docs/forget.md`` has the details):

1. **The id maps.** Every ``IdIndex`` in the file (``user_index_``, ``item_index_``, ...):
   a live id is a trace, and so is a forgotten slot that still holds the id instead of the
   filler (``None``, or 0 in an integer map).
2. **Every string.** JSON string values and data dict keys of the tree (the keys of an
   object's own state are attribute names, not data), the strings of object arrays, unicode
   and byte arrays and scalars, ``bytes`` values, and every string of the pickled part (River's
   dict keys, Surprise's id maps). A string equal to the id is a trace; so is a string that
   holds the id inside it (``"u7|i3"``) when the id has at least 3 characters and the string is
   not itself a live id. A string in a place that belongs to the other kind (an item map) that
   is a live id of that kind is that id, not a trace.
3. **Integer ids only in id places**: the id maps, object arrays of ids, and the id-keyed
   containers of the wrapped libraries (River's ``u_biases``/``i_latents``..., Surprise's
   ``_raw2inner_id_users``..., the River adapter's ``_user_keys``...). Everywhere else an int is
   a count, an index or a parameter, and comparing would find the id ``5`` in every file.
4. **Raw bytes.** The whole file is searched for the id's UTF-8 bytes and its UTF-32-LE bytes
   (NumPy's ``'U'`` arrays). Each hit is placed: inside a string that step 2 read (reported
   there, or explained: part of a longer live id such as ``"u10"`` for ``"u1"``), inside the
   file's structure (array names, array headers), or in bytes no step read (a byte or void
   array that is not a string table): a trace. Hits in numeric arrays (factors, counts) and
   in the checksum are chance matches of a short id's bytes among numbers: listed in
   ``notes``, not traces.

Examples
--------
>>> import os, tempfile
>>> import pandas as pd
>>> from recinc_plugins import Popularity
>>> from recinc_plugins.audit import audit_model
>>> model = Popularity().fit(pd.DataFrame({"user": ["ann", "bob"], "item": ["x", "y"]}))
>>> path = os.path.join(tempfile.mkdtemp(), "m.recinc")
>>> model.save(path)
>>> audit_model(path, users=["ann"]).clean
False
>>> _ = model.forget(users=["ann"])
>>> model.save(path)
>>> audit_model(path, users=["ann"]).clean
True
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import pickletools
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ids import _as_id_array
from .persistence import (
    MODEL_MAGIC,
    SAFE_CLASSES,
    ModelFileError,
    _Decoder,
    _model_class,
    _Resolver,
    _river_classes,
    persisted_classes,
    read_container,
)

__all__ = ["AuditResult", "add_audit_arguments", "audit_model", "run_audit"]

#: containers of the wrapped libraries whose keys (or values) are the caller's raw ids: where
#: an int id is compared (see the module docstring); attribute name -> (kind, part)
_ID_CONTAINERS = {
    "u_biases": ("user", "keys"), "i_biases": ("item", "keys"),
    "u_latents": ("user", "keys"), "i_latents": ("item", "keys"),
    "_raw2inner_id_users": ("user", "keys"), "_raw2inner_id_items": ("item", "keys"),
    "_inner2raw_id_users": ("user", "values"), "_inner2raw_id_items": ("item", "values"),
    "_user_keys": ("user", "items"), "_item_keys": ("item", "items"),
}
#: the id maps of the shared state
_ID_MAPS = {"user_index_": "user", "item_index_": "item"}
_IDINDEX = "recinc_plugins.ids:IdIndex"
#: substrings are searched only for ids at least this long ("u1" is inside every "u1x")
_MIN_SUBSTRING = 3
#: node kinds of the tree that hold no data of the caller's (random generators' states, ...)
_NO_DATA = ("dtype", "device", "generator", "randomstate", "tensor", "ref")
_MEMBER = re.compile(r"(a\d+|pickle)\.npy")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_PICKLE_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                   "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
                   "BYTEARRAY8"}


@dataclass
class AuditResult:
    """What :func:`audit_model` found.

    Attributes
    ----------
    clean : bool
        True when no trace of any of the ids was found.
    traces : list of str
        One line per trace: the id and where it was found, in words.
    by_id : dict
        ``"user 'ann'"`` -> the places found for that id (empty: no trace).
    notes : list of str
        What was looked at and could not be a trace (chance matches of a short id's bytes
        inside numbers), or could not be checked.
    model : str
        The model class the file names.
    """

    clean: bool
    traces: list[str]
    by_id: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model: str = ""


@dataclass
class _Target:
    kind: str  # "user" | "item"
    value: Any  # str or int
    label: str
    places: list[str] = field(default_factory=list)

    @property
    def text(self) -> str | None:
        return self.value if isinstance(self.value, str) else None


def audit_model(path: str | os.PathLike, users: Any = None, items: Any = None
                ) -> AuditResult:
    """Report every trace of ``users`` and ``items`` (ids, as the model was given them) left
    in the model file at ``path``; nothing is built and no code from the file runs.

    Raises
    ------
    ModelFileError
        ``path`` is not a model file of format 2, is truncated or corrupt, or names a type
        that a model file may not hold.
    """
    targets = [_Target(kind, value, f"{kind} {value!r}")
               for kind, ids in (("user", users), ("item", items)) if ids is not None
               for value in _ids(ids, kind)]
    if not targets:
        raise ValueError("audit_model needs at least one user or item id to look for")
    audit = _Audit(os.fspath(path), targets)
    audit.run()
    traces = [f"{t.label}: {place}" for t in targets for place in t.places]
    return AuditResult(clean=not traces, traces=traces,
                       by_id={t.label: list(t.places) for t in targets},
                       notes=audit.notes, model=audit.model)


def _ids(ids: Any, kind: str) -> list[Any]:
    values = _as_id_array(ids)
    out = []
    for v in values.tolist():
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError(f"{kind} ids to audit must be str or int, got {v!r}")
        if v not in out:
            out.append(v)
    return out


class _Audit:
    def __init__(self, where: str, targets: list[_Target]) -> None:
        self.where = where
        self.targets = targets
        self.notes: list[str] = []
        self.model = ""
        self.live: dict[str, set] = {"user": set(), "item": set()}
        self.text_tables: dict[str, np.ndarray] = {}  # objects text key -> string lengths
        self.seen: set[int] = set()
        self.chance: dict[str, dict[str, int]] = {}  # label -> region -> chance matches

    # -- the file ------------------------------------------------------------------------------

    def run(self) -> None:
        version, header, payload = read_container(self.where, MODEL_MAGIC)
        if version != 2:
            raise ModelFileError(
                f"{self.where} is in model format {version}, a pickle: auditing it would mean "
                "running it. Load it with trusted=True only if you trust it, save it again "
                "(format 2), and audit that file")
        name = header.get("class")
        if not isinstance(name, str) or ":" not in name:
            raise ModelFileError(f"{self.where} is corrupt: its header names no model class")
        self.model = name
        extra: dict[str, Any] = {}
        self.unknown_model = False
        try:
            extra = persisted_classes(_model_class(self.where, name, False))
        except ModelFileError:
            self.unknown_model = True
            self.notes.append(f"the model class {name} is not installed here: the package's "
                              "own types in the file are read as data, without it")
        self.allowed = set(SAFE_CLASSES) | set(extra)
        try:
            self.archive = np.load(io.BytesIO(payload), allow_pickle=False)
        except Exception as exc:
            raise ModelFileError(f"{self.where} is corrupt: unreadable arrays ({exc})") from exc
        self.decoder = _Decoder(self.archive, _Resolver(self.where, False, extra))
        content = header.get("content")
        try:
            if not isinstance(content, dict) or content.get("$") != "dict" \
                    or not isinstance(content.get("s"), dict):
                raise ModelFileError(f"{self.where} is corrupt: it holds no parameters and "
                                     "state")
            self._find_maps(content, None)
            for part, node in content["s"].items():  # "params" and "state": names are code
                if isinstance(node, dict) and node.get("$") == "dict" and "s" in node:
                    self._dict(node, part, None, False, attributes=True)
                else:
                    self._node(node, part, None, False)
            self._raw(payload)
            self._chance_notes()
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                RecursionError) as exc:
            raise ModelFileError(f"{self.where} is corrupt: its content does not read "
                                 f"({type(exc).__name__}: {exc})") from exc
        finally:
            self.archive.close()

    # -- the id maps -----------------------------------------------------------------------------

    def _find_maps(self, node: Any, name: str | None) -> None:
        """Collect the live ids of the user and item maps first: a string elsewhere that is a
        live id of the other kind is that id, not a trace."""
        if isinstance(node, list):
            for v in node:
                self._find_maps(v, name)
            return
        if not isinstance(node, dict):
            return
        if node.get("$") == "obj" and node.get("cls") == _IDINDEX:
            kind = _ID_MAPS.get(name or "")
            if kind is not None:
                ids, dead = self._index_arrays(node)
                self.live[kind].update(ids[~dead].tolist())
            return
        if "s" in node and isinstance(node["s"], dict):
            for key, value in node["s"].items():
                self._find_maps(value, key)
            return
        for key, value in node.items():
            if key != "$":
                self._find_maps(value, name)

    def _index_arrays(self, node: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        state = node["state"]
        fields = state["s"] if isinstance(state, dict) and "s" in state else {}
        ids = self._array_node(fields["ids"])
        dead_node = fields.get("dead")
        dead = (np.zeros(ids.size, dtype=bool) if dead_node is None
                else np.asarray(self._array_node(dead_node), dtype=bool))
        if dead.size != ids.size:
            raise ModelFileError(f"{self.where} is corrupt: an id map's forgotten mask holds "
                                 f"{dead.size} entries for {ids.size} ids")
        return ids, dead

    def _array_node(self, node: dict[str, Any]) -> np.ndarray:
        kind = node["$"]
        if kind == "array":
            array = self.decoder.memo[node["@"]] = self.decoder.array(node["key"])
            return array
        if kind == "objects":
            return self._objects(node)
        if kind == "ref":
            return np.asarray(self.decoder.memo[node["@"]])
        raise ModelFileError(f"{self.where} is corrupt: an id map holds a {kind!r} node")

    def _objects(self, node: dict[str, Any]) -> np.ndarray:
        self.text_tables[node["text"]] = self.decoder.array(node["lengths"])
        out = self.decoder._objects(node)
        self.decoder.memo[node["@"]] = out
        return out

    def _id_map(self, node: dict[str, Any], path: str, name: str | None) -> None:
        kind = _ID_MAPS.get(name or "")
        ids, dead = self._index_arrays(node)
        filler = None if ids.dtype == object else 0
        for target in self.targets:
            if kind is not None and kind != target.kind:
                continue
            hit = _equal(ids, target.value)
            live = np.flatnonzero(hit & ~dead)
            what = f"the {kind} id map" if kind else "an id map"
            if live.size:
                target.places.append(f"{what} ({path}) still knows it, at index "
                                     f"{int(live[0])}")
            if target.value != filler and (hit & dead).any():
                target.places.append(f"{what} ({path}) holds it in a forgotten slot, at index "
                                     f"{int(np.flatnonzero(hit & dead)[0])}")

    # -- the tree ------------------------------------------------------------------------------

    def _node(self, node: Any, path: str, kind: str | None, id_place: bool) -> None:
        if isinstance(node, str):
            self._string(node, path, kind)
            return
        if isinstance(node, bool) or node is None or isinstance(node, float):
            return
        if isinstance(node, int):
            if id_place:
                self._int(node, path, kind)
            return
        if isinstance(node, list):
            raise ModelFileError(f"{self.where} is corrupt: a bare list")
        if not isinstance(node, dict):
            raise ModelFileError(f"{self.where} is corrupt: a {type(node).__name__} node")
        what = node["$"]
        if what in _NO_DATA:
            return
        if what in ("list", "set", "tuple", "frozenset"):
            for n, value in enumerate(node["v"]):
                self._node(value, f"{path}[{n}]", kind, id_place)
        elif what == "dict":
            self._dict(node, path, kind, id_place, attributes=False)
        elif what == "bytes":
            import base64

            self._bytes(base64.b64decode(node["b64"]), path)
        elif what == "scalar":
            import base64

            dtype = np.dtype(node["dtype"])
            if dtype.hasobject:
                raise ModelFileError(f"{self.where} is corrupt: an object scalar")
            value = np.frombuffer(base64.b64decode(node["b64"]), dtype=dtype)
            self._array(value, path, kind, id_place)
        elif what == "array":
            array = self.decoder.memo[node["@"]] = self.decoder.array(node["key"])
            self._array(array, path, kind, id_place)
        elif what == "objects":
            self._array(self._objects(node), path, kind, True)
        elif what == "obj":
            cls = node["cls"]
            self._check_class(cls)
            if cls == _IDINDEX:
                self._id_map(node, path, path.rpartition(".")[2])
                return
            state = node["state"]
            if isinstance(state, dict) and state.get("$") == "dict":
                self._dict(state, path, kind, False, attributes=True)
            else:
                self._node(state, path, kind, False)
        elif what == "pickle":
            index = node["i"]
            try:
                value = self.decoder._opaque(index)
            except ModelFileError as exc:
                if "cannot be imported here" not in str(exc):
                    raise
                self._pickle_unread(str(exc))
                return
            self._python(value, path, kind, id_place)
        else:
            raise ModelFileError(f"{self.where} is corrupt: unknown node {what!r}")

    def _dict(self, node: dict[str, Any], path: str, kind: str | None, id_place: bool,
              attributes: bool) -> None:
        if "s" in node:
            for key, value in node["s"].items():
                if attributes:  # an object's attribute names are the code's, not data
                    self._attribute(key, value, path, kind)
                else:
                    self._string(key, f"{path}, a key", kind)
                    self._node(value, f"{path}[{key!r}]", kind, False)
            return
        for n, (key, value) in enumerate(zip(node["k"], node["v"], strict=True)):
            self._node(key, f"{path}, key {n}", kind, id_place)
            self._node(value, f"{path}[{n}]", kind, False)

    def _attribute(self, name: str, value: Any, path: str, kind: str | None) -> None:
        here = f"{path}.{name}" if path != "the model" else name
        child = _kind_of(name) or kind
        container = _ID_CONTAINERS.get(name)
        if container is None or not isinstance(value, dict):
            self._node(value, here, child, False)
            return
        child, part = container
        what = value.get("$")
        if what == "pickle":
            try:
                obj = self.decoder._opaque(value["i"])
            except ModelFileError as exc:
                if "cannot be imported here" not in str(exc):
                    raise
                self._pickle_unread(str(exc))
                return
            self._id_container(obj, here, child, part)
        elif what == "dict" and "k" in value:
            for key, item in zip(value["k"], value["v"], strict=True):
                self._node(key, f"{here}, a key", child, part == "keys")
                self._node(item, f"{here}, a value", child, part == "values")
        elif what == "dict":
            for key, item in value["s"].items():
                self._string(key, f"{here}, a key", child)
                self._node(item, f"{here}[{key!r}]", child, part == "values")
        else:
            self._node(value, here, child, part == "items")

    def _check_class(self, name: Any) -> None:
        if not isinstance(name, str):
            raise ModelFileError(f"{self.where} is corrupt: a class name that is not text")
        if name in self.allowed:
            return
        if name.startswith("river.") and name in _river_classes():
            return
        if self.unknown_model and name.startswith("recinc_plugins."):
            return  # a type of the package's own, which the missing model class would name
        raise ModelFileError(
            f"{self.where} holds {name}, which is not among the types a model file may hold "
            "(docs/security.md); nothing was imported for it, and the file was not audited")

    def _pickle_unread(self, why: str) -> None:
        """A library the pickled part needs is missing: its strings are still read, as the
        pickle's own constants (no object is built), and integer ids there cannot be placed."""
        if getattr(self, "pickle_scanned", False):
            return
        self.pickle_scanned = True
        self.notes.append(f"the pickled part was read as constants only ({why}); integer ids "
                          "there were not checked")
        blob = self.decoder.array("pickle").tobytes()
        for op, arg, _ in pickletools.genops(blob):
            if op.name in _PICKLE_STRINGS:
                if isinstance(arg, str):
                    self._string(arg, "the pickled part", None)
                elif isinstance(arg, (bytes, bytearray)):
                    self._bytes(bytes(arg), "the pickled part")

    # -- values ----------------------------------------------------------------------------------

    def _string(self, value: str, path: str, kind: str | None) -> None:
        for target in self.targets:
            text = target.text
            if text is None or text not in value:
                continue
            other = "item" if target.kind == "user" else "user"
            if value == text:
                if kind == other and value in self.live[other]:
                    continue  # the other kind's id, in its own place
                also = (f" (it is also a live {other} id: it may be that one)"
                        if value in self.live[other] else "")
                target.places.append(f"{path}: the string {value!r}{also}")
            elif len(text) >= _MIN_SUBSTRING and not self._is_live(value):
                target.places.append(f"{path}: inside the string {_short(value)}")

    def _is_live(self, value: Any) -> bool:
        return value in self.live["user"] or value in self.live["item"]

    def _int(self, value: int, path: str, kind: str | None) -> None:
        for target in self.targets:
            if isinstance(target.value, int) and value == target.value and \
                    kind in (None, target.kind):
                target.places.append(f"{path}: the {target.kind} id {value}")

    def _bytes(self, value: bytes, path: str) -> None:
        for target in self.targets:
            text = target.text
            if text is None:
                continue
            if text.encode("utf-8") in value or text.encode("utf-32-le") in value:
                target.places.append(f"{path}: inside a bytes value")

    def _array(self, array: np.ndarray, path: str, kind: str | None, id_place: bool) -> None:
        flat = np.asarray(array).reshape(-1)
        if flat.dtype == object:
            for n, value in enumerate(flat.tolist()):
                self._python(value, f"{path}[{n}]", kind, id_place)
        elif flat.dtype.kind == "U":
            for value in set(flat.tolist()):
                self._string(value, path, kind)
        elif flat.dtype.kind == "S":
            for value in set(flat.tolist()):
                self._bytes(value, path)
        elif flat.dtype.kind in "iu" and id_place:
            for target in self.targets:
                if isinstance(target.value, int) and kind in (None, target.kind):
                    hit = np.flatnonzero(flat == target.value)
                    if hit.size:
                        target.places.append(f"{path}: the {target.kind} id {target.value} "
                                             f"at position {int(hit[0])}")

    def _python(self, value: Any, path: str, kind: str | None, id_place: bool,
                depth: int = 0) -> None:
        """A value built by the restricted unpickler (or an object array's element)."""
        if depth > 200:
            raise ModelFileError(f"{self.where} is corrupt: content nested too deep")
        if isinstance(value, str):
            self._string(value, path, kind)
            return
        if isinstance(value, (bytes, bytearray)):
            self._bytes(bytes(value), path)
            return
        if isinstance(value, (bool, np.bool_)) or value is None:
            return
        if isinstance(value, (int, np.integer)):
            if id_place:
                self._int(int(value), path, kind)
            return
        if isinstance(value, (float, complex, np.floating, np.complexfloating, type)):
            return
        if id(value) in self.seen:
            return
        self.seen.add(id(value))
        if isinstance(value, np.ndarray):
            self._array(value, path, kind, id_place)
        elif isinstance(value, dict):
            for key, item in list(value.items()):
                self._python(key, f"{path}, a key", kind, id_place, depth + 1)
                self._python(item, f"{path}[{_short(key)}]", kind, False, depth + 1)
        elif isinstance(value, (list, tuple, set, frozenset)) or type(value).__name__ == "deque":
            for n, item in enumerate(value):
                self._python(item, f"{path}[{n}]", kind, id_place, depth + 1)
        else:
            for name, item in _attributes(value):
                container = _ID_CONTAINERS.get(name)
                here = f"{path}.{name}"
                if container is not None:
                    self._id_container(item, here, *container)
                else:
                    self._python(item, here, _kind_of(name) or kind, False, depth + 1)

    def _id_container(self, value: Any, path: str, kind: str, part: str) -> None:
        if isinstance(value, dict):
            for key, item in list(value.items()):
                self._python(key, f"{path}, a key", kind, part == "keys")
                self._python(item, f"{path}[{_short(key)}]", kind, part == "values")
        else:
            self._python(value, path, kind, part == "items")

    # -- raw bytes -------------------------------------------------------------------------------

    def _raw(self, payload: bytes) -> None:
        """Search the whole file for each string id's UTF-8 and UTF-32-LE bytes and place every
        hit (see the module docstring), by region, all hits at once."""
        with open(self.where, "rb") as fh:
            data = fh.read()
        header_at = 24
        payload_at = header_at + int.from_bytes(data[12:16], "little")
        payload_end = payload_at + len(payload)
        regions = self._regions_cache = _payload_regions(payload, payload_at, self.where)
        starts = np.array([r[0] for r in regions], dtype=np.int64)
        ends = np.array([r[1] for r in regions], dtype=np.int64)
        kinds = np.array([self._region_kind(what, key) for _, _, what, key in regions])
        tokens = np.array([(m.start(), m.end()) for m in
                           _JSON_STRING.finditer(data, header_at, payload_at)],
                          dtype=np.int64).reshape(-1, 2)
        for target in self.targets:
            text = target.text
            if text is None:
                continue
            for encoding in ("utf-8", "utf-32-le"):
                needle = text.encode(encoding)
                hits = np.fromiter((m.start() for m in re.finditer(
                    b"(?=" + re.escape(needle) + b")", data)), dtype=np.int64)
                if hits.size:
                    self._place(target, hits, len(needle), encoding, header_at, payload_at,
                                payload_end, len(data), tokens, starts, ends, kinds)

    def _region_kind(self, what: str, key: str) -> str:
        """How a hit in an archive region is read: ``"seen"`` (the format's own words, or
        strings step 2 read), ``"records"`` (checksums and sizes), ``"numbers"``, or
        ``"unread"`` (bytes no step read: a hit there is a trace)."""
        if what in ("structure", "records", "unread"):
            return "seen" if what == "structure" else what
        if key == "pickle" or key in self.text_tables:
            return "seen"  # the restricted unpickler's strings; an object array's strings
        array = self.decoder.array(key)
        kind = array.dtype.kind
        if kind in "US" and key in self.decoder.arrays:
            return "seen"
        if kind in "fcbmM" or (kind in "iu" and array.dtype.itemsize > 1):
            return "numbers"
        return "unread"

    def _place(self, target: _Target, hits: np.ndarray, size: int, encoding: str,
               header_at: int, payload_at: int, payload_end: int, n_bytes: int,
               tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               kinds: np.ndarray) -> None:
        what = f"its {encoding.upper()} bytes"
        self._chance(target, "the file's prefix", int(np.count_nonzero(hits < header_at)))
        header = hits[(hits >= header_at) & (hits < payload_at)]
        if header.size:
            # inside one of the header's strings: read by step 2 (a trace there is reported
            # there), or one of the format's own words (a class, an array name); else a number
            n = np.searchsorted(tokens[:, 0], header, side="right") - 1
            inside = (n >= 0) & (header + size <= tokens[np.maximum(n, 0), 1])
            self._chance(target, "the header's numbers", int(np.count_nonzero(~inside)))
        archive = hits[(hits >= payload_at) & (hits < payload_end)]
        if archive.size:
            n = np.searchsorted(starts, archive, side="right") - 1
            known = n >= 0
            n = np.maximum(n, 0)
            whole = known & (archive < ends[n]) & (archive + size <= ends[n])
            kind = np.where(whole, kinds[n], "seen")  # across two regions: no one's bytes
            for label, region in (("numbers", "numeric arrays"),
                                  ("records", "the archive's checksums and sizes")):
                self._chance(target, region, int(np.count_nonzero(kind == label)))
            unread = archive[(kind == "unread") | ~known]
            for at in unread[:3].tolist():
                key = self._region_key(at, starts, ends, payload_at)
                target.places.append(f"{what} at byte {at} of the file, {key}")
            if unread.size > 3:
                target.places.append(f"{what} at {unread.size - 3} more place(s) like these")
        rest = hits[hits >= payload_end]
        for at in rest.tolist():
            if at >= n_bytes - 32:
                self._chance(target, "the file's checksum")
            else:
                target.places.append(f"{what} at byte {at} of the file, after its arrays")

    def _region_key(self, at: int, starts: np.ndarray, ends: np.ndarray,
                    payload_at: int) -> str:
        regions = self._regions_cache
        n = int(np.searchsorted(starts, at, side="right")) - 1
        if n < 0 or at >= ends[n] or regions[n][2] == "unread":
            return "in bytes of the archive outside its arrays"
        key = regions[n][3]
        array = self.decoder.array(key)
        return (f"in array {key} ({array.dtype}, shape {array.shape}), which is not a string "
                "table the audit could read")

    def _chance(self, target: _Target, region: str, count: int = 1) -> None:
        if count:
            found = self.chance.setdefault(target.label, {})
            found[region] = found.get(region, 0) + count

    def _chance_notes(self) -> None:
        for label, found in self.chance.items():
            parts = ", ".join(f"{n} in {region}" for region, n in found.items())
            self.notes.append(f"{label}: {sum(found.values())} chance match(es) of its bytes "
                              f"among numbers ({parts}): not traces")


def _payload_regions(payload: bytes, payload_at: int, where: str
                     ) -> list[tuple[int, int, str, str]]:
    """``(start, end, "structure" | "data", key)`` file ranges of the archive: each member's
    zip header and name and its ``.npy`` header are structure, its array's bytes are data."""
    regions = []
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for info in archive.infolist():
                if not _MEMBER.fullmatch(info.filename):
                    raise ModelFileError(f"{where} holds an archive member named "
                                         f"{info.filename!r}, which a model file never has")
                local = payload[info.header_offset:info.header_offset + 30]
                data_at = (info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                           + int.from_bytes(local[28:30], "little"))
                member = payload[data_at:data_at + info.compress_size]
                major = member[6] if len(member) > 7 else 1
                npy = (10 + int.from_bytes(member[8:10], "little") if major == 1
                       else 12 + int.from_bytes(member[8:12], "little"))
                key = info.filename[:-4]
                regions.append((payload_at + info.header_offset, payload_at + data_at + npy,
                                "structure", key))
                regions.append((payload_at + data_at + npy,
                                payload_at + data_at + info.compress_size, "data", key))
    except (zipfile.BadZipFile, ValueError, IndexError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{where} is corrupt: unreadable archive ({exc})") from exc
    # the central directory and the end records: the members' names again, and sizes
    last = max((end for _, end, _, _ in regions), default=payload_at)
    regions.append((last, payload_at + len(payload), "structure", ""))
    regions.sort()
    # between a member's bytes and the next member: its data descriptor (a signature, a
    # CRC and two sizes); any other bytes there are bytes no part of the audit read
    gaps = []
    for (_, end, _, _), (start, _, _, _) in itertools.pairwise(regions):
        if start > end:
            gap = payload[end - payload_at:start - payload_at]
            record = gap.startswith(b"PK\x07\x08") and len(gap) in (16, 24)
            gaps.append((end, start, "records" if record else "unread", ""))
    return sorted(regions + gaps)


def _equal(ids: np.ndarray, value: Any) -> np.ndarray:
    if ids.dtype == object:
        return np.fromiter((type(v) is type(value) and v == value for v in ids.tolist()),
                           dtype=bool, count=ids.size)
    if isinstance(value, int) and ids.dtype.kind in "iu":
        return ids == value
    return np.zeros(ids.size, dtype=bool)


def _kind_of(name: Any) -> str | None:
    """Which kind of id an attribute named ``name`` is about, by its name."""
    if not isinstance(name, str):
        return None
    low = name.lower()
    if "user" in low or re.match(r"_?u_", low):
        return "user"
    if "item" in low or re.match(r"_?i_", low):
        return "item"
    return None


def _attributes(obj: Any) -> Iterable[tuple[str, Any]]:
    found = getattr(obj, "__dict__", None)
    items = list(found.items()) if isinstance(found, dict) else []
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()) or ():
            if isinstance(slot, str) and hasattr(obj, slot):
                items.append((slot, getattr(obj, slot)))
    if not items and hasattr(obj, "__getstate__"):
        try:
            state = obj.__getstate__()
        except Exception:
            state = None
        if isinstance(state, dict):
            items = list(state.items())
        elif state is not None:
            items = [("state", state)]
    return items


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the command -------------------------------------------------------------------------------

def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_file", metavar="MODEL_FILE", help="a file written by model.save")
    parser.add_argument("--user", action="append", default=[], metavar="ID",
                        help="a user id to look for (repeat for more)")
    parser.add_argument("--item", action="append", default=[], metavar="ID",
                        help="an item id to look for (repeat for more)")
    parser.add_argument("--verbose", action="store_true",
                        help="also print the notes (chance matches of the id's bytes among "
                             "numbers, what could not be checked)")


def _cli_ids(values: list[str]) -> list[Any]:
    """Ids from the command line: text, and also the integer where the text is one (a model
    given integer ids holds the int 42, not the text "42")."""
    out: list[Any] = []
    for text in values:
        out.append(text)
        if re.fullmatch(r"[+-]?\d+", text.strip()):
            out.append(int(text))
    return out


def run_audit(args: argparse.Namespace) -> int:
    """``recinc audit-forget``: 0 when no trace was found, 1 when one was, 2 on a bad file."""
    if not args.user and not args.item:
        raise ValueError("give at least one --user ID or --item ID to look for")
    users, items = _cli_ids(args.user), _cli_ids(args.item)
    result = audit_model(args.model_file, users=users or None, items=items or None)
    print(f"{args.model_file}: a {result.model.rpartition(':')[2]} model file")
    shown: dict[str, list[str]] = {}
    for kind, texts in (("user", args.user), ("item", args.item)):
        for text in texts:
            places = [p for label, found in result.by_id.items()
                      if label in (f"{kind} {text!r}", f"{kind} {_int_or_none(text)!r}")
                      for p in found]
            shown[f"{kind} {text}"] = places
    for label, places in shown.items():
        if not places:
            print(f"{label}: no trace")
            continue
        print(f"{label}: {len(places)} trace(s)")
        for place in places:
            print(f"  - {place}")
    if args.verbose:
        for note in result.notes:
            print(f"note: {note}")
    print("clean: no trace of any id" if result.clean
          else "NOT CLEAN: traces of the ids remain in the file")
    return 0 if result.clean else 1


def _int_or_none(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else None
