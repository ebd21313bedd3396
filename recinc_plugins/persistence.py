"""Model files: arrays and JSON, read back by ``recinc_plugins.load`` without running code.

A model file (format 2) is an 8-byte magic, the format version, the lengths of a JSON header and
of a payload, the header, the payload, and a SHA-256 digest of the header, the payload and its
length. The header names the model's class and the library versions, and describes the
content: the constructor parameters and the learned state (``_get_state``, restored by
``_set_state``) as a tree of JSON values, in which every array is a reference into the payload,
a NumPy ``.npz`` archive read with ``allow_pickle=False``.

What the tree may build is fixed here, not by the file: JSON values, lists, tuples, dicts and
sets, NumPy arrays, scalars and random generators, torch tensors, and objects of the classes on
an allow-list (the package's own helper classes, and the classes of the wrapped libraries that
models hold: Surprise's algorithms, River's models, optimisers and statistics, implicit's and
LightFM's models, SciPy's sparse matrices), rebuilt from their attributes as pickle would,
without calling anything the file names. An object with no such form (River's and Surprise's
dicts with a default factory) is kept in one pickle inside the payload, read back by an
unpickler that refuses every class and function not on the same allow-list, naming it.
The model class itself must be registered (``recinc models``) or already imported; no module a
file names is imported before the file is accepted. ``load(path, trusted=True)`` lifts these
limits, for files from a source you trust: it imports what the file names and reads files of
format 1, whose payload was a plain pickle. ``docs/security.md`` says what is safe.

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

import base64
import hashlib
import importlib
import io
import json
import os
import pickle
import platform
import struct
import sys
import zipfile
from functools import lru_cache
from typing import Any

import numpy as np

from .state import SharedState

__all__ = ["CHECKPOINT_MAGIC", "FORMAT_VERSION", "MODEL_MAGIC", "ContentReader", "ModelFileError",
           "build_model", "library_versions", "load_model", "model_content", "persisted_classes",
           "persisted_names", "read_container", "save_model", "write_container"]

FORMAT_VERSION = 2
MODEL_MAGIC = b"RECINC\x00M"
#: the magic of a replay checkpoint (``recinc_plugins.evaluation``), the same container
CHECKPOINT_MAGIC = b"RECINC\x00C"
_PREFIX = struct.Struct("<8sII")  # magic, format version, header length (every format)
_SIZE = struct.Struct("<Q")  # format 2: payload length, right after the prefix
_DIGEST_BYTES = 32
_KINDS = {MODEL_MAGIC: "model file", CHECKPOINT_MAGIC: "replay checkpoint"}


class ModelFileError(ValueError):
    """A saved model file is not one, is truncated or corrupt, is incompatible, or holds
    something that only ``trusted=True`` may load."""


# -- what a file may build -------------------------------------------------------------------

#: classes whose objects a file may hold, rebuilt from their attributes (and, inside the
#: payload's pickle, called with the arguments pickle gives them)
SAFE_CLASSES = frozenset({
    # the package's own state
    "recinc_plugins.ids:IdIndex",
    "recinc_plugins.sparse:GrowingCSR",
    "recinc_plugins.coldstart:Newcomer",
    "recinc_plugins.adapters.lightfm:_Features",
    "recinc_plugins.adapters.river:_Lookahead",
    "recinc_plugins.neural.embeddings:EmbeddingArena",
    "recinc_plugins.neural.replay:ReplayBuffer",
    "recinc_plugins.neural.sequential:DenseParams",
    "recinc_plugins.knn:_PairCounts",
    # containers and values
    "builtins:list", "builtins:dict", "builtins:set", "builtins:frozenset", "builtins:tuple",
    "builtins:bytearray", "builtins:complex", "builtins:int", "builtins:float", "builtins:str",
    "builtins:bool", "builtins:slice", "builtins:range",
    "collections:OrderedDict", "collections:defaultdict", "collections:deque",
    "collections:Counter", "functools:partial", "random:Random",
    # NumPy arrays, scalars and random generators
    "numpy:ndarray", "numpy:dtype",
    "numpy.random._generator:Generator", "numpy.random.mtrand:RandomState",
    "numpy.random._pcg64:PCG64", "numpy.random._pcg64:PCG64DXSM",
    "numpy.random._mt19937:MT19937", "numpy.random._philox:Philox",
    "numpy.random._sfc64:SFC64", "numpy.random.bit_generator:SeedSequence",
    # SciPy's sparse matrices
    "scipy.sparse._csr:csr_matrix", "scipy.sparse._csc:csc_matrix",
    "scipy.sparse._coo:coo_matrix", "scipy.sparse._csr:csr_array",
    "scipy.sparse._csc:csc_array", "scipy.sparse._coo:coo_array",
    # the wrapped libraries' models (River's come from its namespaces, _river_classes)
    "surprise.trainset:Trainset",
    "surprise.prediction_algorithms.matrix_factorization:SVD",
    "surprise.prediction_algorithms.matrix_factorization:SVDpp",
    "surprise.prediction_algorithms.matrix_factorization:NMF",
    "surprise.prediction_algorithms.baseline_only:BaselineOnly",
    "surprise.prediction_algorithms.knns:KNNBasic",
    "surprise.prediction_algorithms.knns:KNNWithMeans",
    "surprise.prediction_algorithms.knns:KNNWithZScore",
    "surprise.prediction_algorithms.knns:KNNBaseline",
    "surprise.prediction_algorithms.slope_one:SlopeOne",
    "surprise.prediction_algorithms.co_clustering:CoClustering",
    "surprise.prediction_algorithms.random_pred:NormalPredictor",
    "implicit.cpu.als:AlternatingLeastSquares",
    "implicit.cpu.bpr:BayesianPersonalizedRanking",
    "implicit.cpu.lmf:LogisticMatrixFactorization",
    "lightfm.lightfm:LightFM",
})

#: functions the payload's pickle may call: NumPy's and Python's own rebuilding helpers
SAFE_FUNCTIONS = frozenset({
    "numpy._core.multiarray:_reconstruct", "numpy.core.multiarray:_reconstruct",
    "numpy._core.multiarray:scalar", "numpy.core.multiarray:scalar",
    "numpy._core.numeric:_frombuffer", "numpy.core.numeric:_frombuffer",
    "numpy.random._pickle:__bit_generator_ctor", "numpy.random._pickle:__generator_ctor",
    "numpy.random._pickle:__randomstate_ctor",
    "numpy.random.bit_generator:__pyx_unpickle_SeedSequence",
    "copyreg:_reconstructor",
})

#: River's namespaces whose classes are safe (models, optimisers, losses, initialisers,
#: learning-rate schedules, running statistics)
_RIVER_NAMESPACES = ("river.reco", "river.optim", "river.optim.losses",
                     "river.optim.initializers", "river.optim.schedulers", "river.stats")


@lru_cache(maxsize=1)
def _river_classes() -> frozenset[str]:
    names = set()
    for namespace in _RIVER_NAMESPACES:
        try:
            module = importlib.import_module(namespace)
        except ImportError:
            return frozenset()
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__.startswith("river."):
                names.add(_name_of(value))
    return frozenset(names)


def _name_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(name: str) -> Any:
    module, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


class _Resolver:
    """Turns the names a file gives into classes and functions: those on the allow-list (and
    a model's own ``persisted_types``), or anything when ``trusted``; else a ModelFileError
    naming the type. Nothing is imported for a name that is refused."""

    def __init__(self, where: str, trusted: bool, extra: dict[str, Any] | None = None) -> None:
        self.where = where
        self.trusted = trusted
        self.extra = dict(extra or {})
        self.cache: dict[str, Any] = {}

    def __call__(self, name: str, *, function: bool = False) -> Any:
        found = self.cache.get(name)
        if found is not None:
            return found
        if name in self.extra:
            found = self.extra[name]
        elif (name in SAFE_CLASSES or (function and name in SAFE_FUNCTIONS)
              or (name.startswith("river.") and name in _river_classes()) or self.trusted):
            try:
                found = _import(name)
            except (ImportError, AttributeError) as exc:
                raise ModelFileError(f"{self.where} holds a {name}, which cannot be imported "
                                     f"here ({exc})") from exc
        else:
            raise ModelFileError(
                f"{self.where} holds {name}, which is not among the types a model file may "
                "hold (docs/security.md); nothing was imported for it. Load the file with "
                "trusted=True only if you trust where it came from"
            )
        if not function and not isinstance(found, type):
            raise ModelFileError(f"{self.where} names {name} as a class, but it is not one")
        self.cache[name] = found
        return found


# -- content -> JSON tree + arrays -------------------------------------------------------------

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_OBJECT_CODES = {str: 0, np.str_: 0, int: 1, bool: 2, np.bool_: 2, float: 3,
                 type(None): 4, bytes: 5, np.bytes_: 5}
_INT64 = np.iinfo(np.int64)


def _default_reduce(cls: type) -> bool:
    """Whether pickle would rebuild ``cls``'s objects as ``cls.__new__(cls)`` plus their
    ``__getstate__`` (what the tree's object nodes do)."""
    return (cls.__reduce_ex__ is object.__reduce_ex__ and cls.__reduce__ is object.__reduce__
            and not hasattr(cls, "__getnewargs_ex__") and not hasattr(cls, "__getnewargs__"))


class _Encoder:
    """Walks the content once: JSON values in place, arrays into ``arrays``, the rest as
    object nodes or, failing that, into one pickle (``opaque``) whose arrays also land in
    ``arrays``. Shared objects are written once and referenced (``{"$": "ref"}``)."""

    def __init__(self, safe: frozenset[str]) -> None:
        self.safe = safe
        self.arrays: dict[str, np.ndarray] = {}
        self.memo: dict[int, int] = {}
        self.array_keys: dict[int, str] = {}
        self.keep: list[Any] = []  # objects memoised by id stay alive until the end
        self.opaque: list[Any] = []
        self.torch = sys.modules.get("torch")

    def _ref(self, obj: Any) -> tuple[int, dict[str, Any] | None]:
        ref = self.memo.get(id(obj))
        if ref is not None:
            return ref, {"$": "ref", "@": ref}
        ref = len(self.memo)
        self.memo[id(obj)] = ref
        self.keep.append(obj)
        return ref, None

    def array_key(self, array: np.ndarray) -> str:
        key = self.array_keys.get(id(array))
        if key is None:
            key = f"a{len(self.arrays)}"
            self.array_keys[id(array)] = key
            self.arrays[key] = array
            self.keep.append(array)
        return key

    def encode(self, obj: Any) -> Any:
        kind = type(obj)
        if obj is None or kind in (bool, int, float, str):
            return obj
        if kind is np.ndarray and not obj.dtype.hasobject and obj.dtype.fields is None:
            ref, seen = self._ref(obj)
            return seen or {"$": "array", "@": ref, "key": self.array_key(obj)}
        if kind in (list, dict, set):
            ref, seen = self._ref(obj)
            if seen:
                return seen
            if kind is list:
                return {"$": "list", "@": ref, "v": [self.encode(v) for v in obj]}
            if kind is set:
                return {"$": "set", "@": ref, "v": [self.encode(v) for v in obj]}
            if all(type(k) is str for k in obj):
                return {"$": "dict", "@": ref,
                        "s": {k: self.encode(v) for k, v in obj.items()}}
            return {"$": "dict", "@": ref, "k": [self.encode(k) for k in obj],
                    "v": [self.encode(v) for v in obj.values()]}
        if kind is tuple:
            return {"$": "tuple", "v": [self.encode(v) for v in obj]}
        if kind is frozenset:
            return {"$": "frozenset", "v": [self.encode(v) for v in obj]}
        if kind is bytes:
            return {"$": "bytes", "b64": base64.b64encode(obj).decode()}
        if isinstance(obj, np.generic) and not obj.dtype.hasobject \
                and obj.dtype.fields is None:
            return {"$": "scalar", "dtype": obj.dtype.str,
                    "b64": base64.b64encode(np.asarray(obj).tobytes()).decode()}
        if isinstance(obj, np.dtype) and not obj.hasobject and obj.fields is None \
                and obj.subdtype is None:
            return {"$": "dtype", "v": obj.str}
        if kind is np.random.Generator:
            node = self._generator(obj.bit_generator)
            if node is not None:
                ref, seen = self._ref(obj)
                return seen or {"$": "generator", "@": ref, **node}
        if kind is np.random.RandomState:
            state = obj.get_state(legacy=False)
            if state.get("bit_generator") == "MT19937":
                ref, seen = self._ref(obj)
                return seen or {"$": "randomstate", "@": ref, "state": self.encode(state)}
        if kind is np.ndarray and obj.dtype == object:
            return self._objects(obj)
        if self.torch is not None:
            node = self._torch(obj)
            if node is not None:
                return node
        if _name_of(kind) in self.safe and _default_reduce(kind):
            ref, seen = self._ref(obj)
            return seen or {"$": "obj", "@": ref, "cls": _name_of(kind),
                            "state": self.encode(obj.__getstate__())}
        return self._pickled(obj)

    def _generator(self, bit_generator: Any) -> dict[str, Any] | None:
        """A NumPy bit generator as its name, seed sequence and state (all public)."""
        name = type(bit_generator).__name__
        if name not in _BIT_GENERATORS or type(bit_generator) is not getattr(np.random, name):
            return None
        seq = getattr(bit_generator, "seed_seq", None)
        seed = None
        if type(seq) is np.random.SeedSequence:
            seed = {"entropy": seq.entropy, "spawn_key": list(seq.spawn_key),
                    "pool_size": seq.pool_size, "n_children_spawned": seq.n_children_spawned}
        return {"bit": name, "seed": self.encode(seed), "state": self.encode(bit_generator.state)}

    def _pickled(self, obj: Any) -> dict[str, Any]:
        ref, seen = self._ref(obj)
        if seen:
            return seen
        self.opaque.append(obj)
        return {"$": "pickle", "@": ref, "i": len(self.opaque) - 1}

    def _objects(self, array: np.ndarray) -> dict[str, Any]:
        """An object array of ids (str, int, float, bool, None, bytes) as plain arrays: a
        code per element, the numbers, and the strings' UTF-8 bytes and lengths."""
        flat = array.reshape(-1)
        try:
            codes = np.fromiter((_OBJECT_CODES[type(v)] for v in flat), dtype=np.uint8,
                                count=flat.size)
        except KeyError:
            return self._pickled(array)
        numbers = np.zeros(flat.size, dtype=np.float64)
        ints = np.zeros(flat.size, dtype=np.int64)
        is_int = (codes == 1) | (codes == 2)
        if is_int.any():
            values = [int(v) for v in flat[is_int]]
            if min(values) < _INT64.min or max(values) > _INT64.max:
                return self._pickled(array)
            ints[is_int] = values
        if (codes == 3).any():
            numbers[codes == 3] = flat[codes == 3].astype(np.float64)
        text = (codes == 0) | (codes == 5)
        pieces = [v.encode("utf-8", "surrogatepass") if c == 0 else bytes(v)
                  for v, c in zip(flat[text], codes[text], strict=True)]
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        blob = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        ref, _ = self._ref(array)
        node = {"$": "objects", "@": ref, "shape": list(array.shape),
                "codes": self.array_key(codes), "lengths": self.array_key(lengths),
                "text": self.array_key(blob)}
        if is_int.any():
            node["ints"] = self.array_key(ints)
        if (codes == 3).any():
            node["floats"] = self.array_key(numbers)
        return node

    def _torch(self, obj: Any) -> dict[str, Any] | None:
        torch = self.torch
        if isinstance(obj, torch.device):
            return {"$": "device", "v": str(obj)}
        if type(obj) not in (torch.Tensor, torch.nn.Parameter):
            return None
        key = self.tensor_key(obj)
        if key is None:
            return self._pickled(obj)
        ref, seen = self._ref(obj)
        return seen or {"$": "tensor", "@": ref, "key": key, "grad": bool(obj.requires_grad),
                        "parameter": type(obj) is torch.nn.Parameter}

    def tensor_key(self, tensor: Any) -> str | None:
        """The archive key of a tensor's values, None for a dtype NumPy has not (bfloat16)."""
        key = self.array_keys.get(id(tensor))
        if key is None:
            try:
                array = tensor.detach().cpu().contiguous().numpy()
            except (TypeError, RuntimeError):
                return None
            key = self.array_key(array)
            self.array_keys[id(tensor)] = key
            self.keep.append(tensor)
        return key

    def pickle_opaque(self) -> None:
        """The objects without a tree form, in one pickle (their arrays and tensors kept in
        the archive), as the array ``pickle``."""
        if not self.opaque:
            return
        buffer = io.BytesIO()
        _Pickler(buffer, self).dump(self.opaque)
        self.arrays["pickle"] = np.frombuffer(buffer.getbuffer(), dtype=np.uint8)


class _Pickler(pickle.Pickler):
    """Pickles the objects without a tree form; arrays and tensors go to the archive."""

    def __init__(self, file: io.BytesIO, encoder: _Encoder) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.encoder = encoder

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and not obj.dtype.hasobject and obj.dtype.fields is None:
            return ("array", self.encoder.array_key(obj))
        torch = self.encoder.torch
        if torch is not None and type(obj) in (torch.Tensor, torch.nn.Parameter):
            key = self.encoder.tensor_key(obj)
            if key is not None:
                return ("tensor", key, bool(obj.requires_grad),
                        type(obj) is torch.nn.Parameter)
        return None


# -- JSON tree + arrays -> content -------------------------------------------------------------

class _Unpickler(pickle.Unpickler):
    """Reads the payload's pickle: every class and function through the resolver."""

    def __init__(self, file: io.BytesIO, decoder: _Decoder) -> None:
        super().__init__(file)
        self.decoder = decoder

    def find_class(self, module: str, name: str) -> Any:
        return self.decoder.resolve(f"{module}:{name}", function=True)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unknown reference {pid!r}")
        if pid[0] == "array":
            return self.decoder.array(pid[1])
        if pid[0] == "tensor":
            return self.decoder.tensor(pid[1], pid[2], pid[3])
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


class _Decoder:
    def __init__(self, archive: np.lib.npyio.NpzFile, resolve: _Resolver) -> None:
        self.archive = archive
        self.resolve = resolve
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict[str, Any] = {}
        self.memo: dict[int, Any] = {}
        self.opaque: list[Any] | None = None

    def array(self, key: str) -> np.ndarray:
        array = self.arrays.get(key)
        if array is None:
            if not isinstance(key, str) or key not in self.archive.files:
                raise ModelFileError(f"{self.resolve.where} is corrupt: no array {key!r}")
            array = self.arrays[key] = self.archive[key]
        return array

    def tensor(self, key: str, grad: bool, parameter: bool) -> Any:
        found = self.tensors.get(key)
        if found is None:
            import torch

            found = torch.from_numpy(self.array(key))
            if parameter:
                found = torch.nn.Parameter(found, requires_grad=bool(grad))
            elif grad:
                found.requires_grad_(True)
            self.tensors[key] = found
        return found

    def _opaque(self, index: int) -> Any:
        if self.opaque is None:
            blob = self.array("pickle")
            try:
                self.opaque = _Unpickler(io.BytesIO(blob.tobytes()), self).load()
            except ModelFileError:
                raise
            except Exception as exc:
                raise ModelFileError(f"{self.resolve.where} is corrupt: its pickled part does "
                                     f"not load ({type(exc).__name__}: {exc})") from exc
        return self.opaque[index]

    def decode(self, node: Any) -> Any:
        if not isinstance(node, dict):
            if isinstance(node, list):  # a list is always a node; a bare one is no content
                raise ModelFileError(f"{self.resolve.where} is corrupt: a bare list")
            return node
        kind = node["$"]
        if kind == "ref":
            return self.memo[node["@"]]
        if kind == "tuple":
            return tuple(self.decode(v) for v in node["v"])
        if kind == "frozenset":
            return frozenset(self.decode(v) for v in node["v"])
        if kind == "bytes":
            return base64.b64decode(node["b64"])
        if kind == "scalar":
            dtype = np.dtype(node["dtype"])
            if dtype.hasobject:
                raise ModelFileError(f"{self.resolve.where} is corrupt: an object scalar")
            return np.frombuffer(base64.b64decode(node["b64"]), dtype=dtype)[0]
        if kind == "dtype":
            return np.dtype(node["v"])
        if kind == "device":
            import torch

            return torch.device(node["v"])
        ref = node["@"]
        if kind == "array":
            out = self.array(node["key"])
        elif kind == "tensor":
            out = self.tensor(node["key"], node["grad"], node["parameter"])
        elif kind == "objects":
            out = self._objects(node)
        elif kind == "pickle":
            out = self._opaque(node["i"])
        elif kind == "list":
            out = self.memo[ref] = []
            out.extend(self.decode(v) for v in node["v"])
        elif kind == "set":
            out = self.memo[ref] = set()
            out.update(self.decode(v) for v in node["v"])
        elif kind == "dict":
            out = self.memo[ref] = {}
            if "s" in node:
                for key, value in node["s"].items():
                    out[key] = self.decode(value)
            else:
                for key, value in zip(node["k"], node["v"], strict=True):
                    out[self.decode(key)] = self.decode(value)
        elif kind == "generator":
            out = np.random.Generator(self._bit_generator(node))
        elif kind == "randomstate":
            out = np.random.RandomState()
            out.set_state(self.decode(node["state"]))
        elif kind == "obj":
            cls = self.resolve(node["cls"])
            if not _default_reduce(cls):  # (NumPy's generators, partial, ...: never so saved)
                raise ModelFileError(f"{self.resolve.where} is corrupt: a {node['cls']} is "
                                     "not rebuilt from its attributes")
            out = self.memo[ref] = cls.__new__(cls)
            _set_object_state(out, self.decode(node["state"]))
        else:
            raise ModelFileError(f"{self.resolve.where} is corrupt: unknown node {kind!r}")
        self.memo[ref] = out
        return out

    def _bit_generator(self, node: dict[str, Any]) -> Any:
        if node["bit"] not in _BIT_GENERATORS:
            raise ModelFileError(f"{self.resolve.where} is corrupt: no bit generator "
                                 f"{node['bit']!r}")
        seed = self.decode(node["seed"])
        if seed is not None:
            seed = np.random.SeedSequence(seed["entropy"], spawn_key=tuple(seed["spawn_key"]),
                                          pool_size=seed["pool_size"],
                                          n_children_spawned=seed["n_children_spawned"])
        bit_generator = getattr(np.random, node["bit"])(seed)
        bit_generator.state = self.decode(node["state"])
        return bit_generator

    def _objects(self, node: dict[str, Any]) -> np.ndarray:
        codes = self.array(node["codes"])
        lengths = self.array(node["lengths"])
        text = self.array(node["text"]).tobytes()
        ints = self.array(node["ints"]) if "ints" in node else None
        floats = self.array(node["floats"]) if "floats" in node else None
        ends = np.cumsum(lengths).tolist()
        starts = [0, *ends[:-1]]
        out = np.empty(codes.size, dtype=object)
        if codes.size and not (codes == 0).all():
            values: list[Any] = []
            pieces = iter(zip(starts, ends, strict=True))
            for n, code in enumerate(codes.tolist()):
                if code == 0:
                    s, e = next(pieces)
                    values.append(text[s:e].decode("utf-8", "surrogatepass"))
                elif code == 1:
                    values.append(int(ints[n]))
                elif code == 2:
                    values.append(bool(ints[n]))
                elif code == 3:
                    values.append(float(floats[n]))
                elif code == 4:
                    values.append(None)
                elif code == 5:
                    s, e = next(pieces)
                    values.append(text[s:e])
                else:
                    raise ModelFileError(f"{self.resolve.where} is corrupt: id code {code}")
            out[:] = values
        elif codes.size:
            out[:] = [text[s:e].decode("utf-8", "surrogatepass")
                      for s, e in zip(starts, ends, strict=True)]
        return out.reshape(node["shape"])


def _set_object_state(obj: Any, state: Any) -> None:
    """What pickle's BUILD does: ``__setstate__`` where the class has one, else the instance
    dict and slots."""
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        obj.__dict__.update(state)
    if slots:
        for key, value in slots.items():
            setattr(obj, key, value)


# -- the container -------------------------------------------------------------------------------

class _HashingFile:
    """Writes through to a file and into a digest; not seekable, so that the zip archive is
    written in one pass (sizes and checksums after each member)."""

    def __init__(self, fh: Any, digest: Any) -> None:
        self.fh = fh
        self.digest = digest
        self.n = 0

    def write(self, data: Any) -> int:
        self.digest.update(data)
        self.fh.write(data)
        size = memoryview(data).nbytes
        self.n += size
        return size

    def tell(self) -> int:
        return self.n

    def seek(self, *args: Any) -> int:
        raise OSError("not seekable")

    def flush(self) -> None:
        self.fh.flush()


def _write_member(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    """One ``.npy`` member, its data written from the array's memory (no copy)."""
    array = np.ascontiguousarray(array)
    header = np.lib.format.header_data_from_array_1_0(array)
    with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
        try:
            np.lib.format.write_array_header_1_0(member, header)
        except ValueError:  # a header too long for format 1.0
            np.lib.format.write_array_header_2_0(member, header)
        if array.size:
            member.write(memoryview(array.reshape(-1).view(np.uint8)))


def write_container(path: str | os.PathLike, magic: bytes, header: dict[str, Any],
                    content: Any, safe: frozenset[str] | None = None) -> None:
    """Write ``content`` as a JSON tree (in the header) and an ``.npz`` payload, all at once:
    a temporary file beside ``path`` is renamed over it, so a reader never sees part of one."""
    encoder = _Encoder(SAFE_CLASSES | (safe or frozenset()) | _river_names_if_loaded())
    tree = encoder.encode(content)
    encoder.pickle_opaque()
    header_bytes = json.dumps({**header, "content": tree}, separators=(",", ":")).encode()
    target = os.fspath(path)
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(_PREFIX.pack(magic, FORMAT_VERSION, len(header_bytes)))
            fh.write(_SIZE.pack(0))  # the payload's length, known at the end
            digest = hashlib.sha256(header_bytes)
            fh.write(header_bytes)
            out = _HashingFile(fh, digest)
            with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for key, array in encoder.arrays.items():
                    _write_member(archive, key, array)
            size = _SIZE.pack(out.n)
            digest.update(size)
            fh.write(digest.digest())
            fh.seek(_PREFIX.size)
            fh.write(size)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _river_names_if_loaded() -> frozenset[str]:
    return _river_classes() if "river" in sys.modules else frozenset()


def read_container(path: str | os.PathLike, magic: bytes, *, error: type = ModelFileError
                   ) -> tuple[int, dict[str, Any], bytes]:
    """``(format, header, payload)`` of a file written by :func:`write_container` (format 1
    files: the header and the raw pickle, not yet checked); ``error`` names every problem."""
    where = os.fspath(path)
    kind = _KINDS[magic]
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        prefix = fh.read(_PREFIX.size)
        if len(prefix) < 8 or prefix[:8] != magic:
            other = _KINDS.get(prefix[:8])
            raise error(f"{where} is not a recinc-plugins {kind}"
                        + (f" (it is a {other})" if other else " (no header)"))
        if len(prefix) < _PREFIX.size:
            raise error(f"{where} is truncated: its header is cut short")
        _, version, header_len = _PREFIX.unpack(prefix)
        if version > FORMAT_VERSION:
            label = "model" if magic == MODEL_MAGIC else "checkpoint"
            raise error(f"{where} was written in {label} format {version}; this recinc-plugins "
                        f"reads up to format {FORMAT_VERSION} (upgrade recinc-plugins)")
        if version == 1:
            return 1, *_read_format_1(fh, where, header_len, error)
        sized = fh.read(_SIZE.size)
        start = _PREFIX.size + _SIZE.size + header_len
        if len(sized) < _SIZE.size or size < start:
            raise error(f"{where} is truncated: its header is cut short")
        (payload_len,) = _SIZE.unpack(sized)
        found = size - start - _DIGEST_BYTES
        if found != payload_len:
            raise error(f"{where} is truncated or has trailing bytes: header says "
                        f"{payload_len} payload bytes, the file has {max(found, 0)}")
        header_bytes = fh.read(header_len)
        payload = fh.read(payload_len)
        stored = fh.read(_DIGEST_BYTES)
    digest = hashlib.sha256(header_bytes)
    digest.update(payload)
    digest.update(sized)
    if digest.digest() != stored:
        raise error(f"{where} is corrupt: payload checksum does not match (a byte of it "
                    "changed since it was written)")
    try:
        header = json.loads(header_bytes)
    except (ValueError, RecursionError) as exc:
        raise error(f"{where} is corrupt: unreadable header ({exc})") from exc
    if not isinstance(header, dict):
        raise error(f"{where} is corrupt: its header is not a JSON object")
    return version, header, payload


def _read_format_1(fh: Any, where: str, header_len: int, error: type
                   ) -> tuple[dict[str, Any], bytes]:
    header_bytes = fh.read(header_len)
    if len(header_bytes) < header_len:
        raise error(f"{where} is truncated: its header is cut short")
    try:
        header = json.loads(header_bytes)
    except ValueError as exc:
        raise error(f"{where} is corrupt: unreadable header ({exc})") from exc
    payload = fh.read()
    if not isinstance(header, dict):
        raise error(f"{where} is corrupt: its header is not a JSON object")
    expected = header.get("payload_bytes", -1)
    if len(payload) != expected:
        raise error(f"{where} is truncated or has trailing bytes: header says {expected} "
                    f"payload bytes, the file has {len(payload)}")
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise error(f"{where} is corrupt: payload checksum does not match")
    return header, payload


class ContentReader:
    """Builds the content of a format-2 file (or parts of it, ``read(node)``) under the
    allow-list of :class:`_Resolver`; every problem is an ``error`` naming the file."""

    def __init__(self, where: str, header: dict[str, Any], payload: bytes, *, trusted: bool,
                 extra: dict[str, Any] | None = None, error: type = ModelFileError) -> None:
        self.where = where
        self.header = header
        self.error = error
        try:
            self.archive = np.load(io.BytesIO(payload), allow_pickle=False)
        except Exception as exc:
            raise error(f"{where} is corrupt: unreadable arrays ({exc})") from exc
        self.decoder = _Decoder(self.archive, _Resolver(where, trusted, extra))

    def read(self, node: Any = None) -> Any:
        """The content, or the part of it that ``node`` (a node of the header's tree) is."""
        try:
            return self.decoder.decode(self.header.get("content") if node is None else node)
        except ModelFileError as exc:
            if self.error is ModelFileError:
                raise
            raise self.error(str(exc)) from exc
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                RecursionError) as exc:
            raise self.error(f"{self.where} is corrupt: its content does not rebuild "
                             f"({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        self.archive.close()


# -- models ---------------------------------------------------------------------------------------

def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` (parameters, learned state, id maps) to ``path``, all at once."""
    header = {"format": FORMAT_VERSION, "class": _name_of(type(model)),
              "python": platform.python_version(), "versions": library_versions()}
    write_container(path, MODEL_MAGIC, header, model_content(model),
                    persisted_names(type(model)))


def model_content(model: Any) -> dict[str, Any]:
    """What a file holds of ``model``: its parameters and learned state."""
    return {"params": model.get_params(), "state": model._get_state()}


def load_model(path: str | os.PathLike, cls: type, *, trusted: bool = False) -> Any:
    """Read a model written by :func:`save_model` that must be a ``cls``; parameters saved
    under an earlier name (the class's ``_renamed_params``) are given their current name.

    Without ``trusted``, the model class must be registered or already imported and the
    content may only hold the types of the allow-list; format-1 files (a pickle) are refused.
    """
    where = os.fspath(path)
    version, header, payload = read_container(path, MODEL_MAGIC)
    name = header.get("class")
    if not isinstance(name, str) or ":" not in name:
        raise ModelFileError(f"{where} is corrupt: its header names no model class")
    if version == 1 and not trusted:
        raise ModelFileError(
            f"{where} was written in model format 1 by an earlier recinc-plugins: its payload "
            "is a pickle, which can run any code when it is loaded. Load it with trusted=True "
            "only if you trust where it came from (then save it again to write format "
            f"{FORMAT_VERSION})"
        )
    target = _model_class(where, name, trusted)
    if not (isinstance(target, type) and issubclass(target, cls)):
        raise ModelFileError(f"{where} holds a {name}, not a {cls.__name__}")
    if version == 1:
        content = _unpickle_format_1(where, header, payload)
    else:
        reader = ContentReader(where, header, payload, trusted=trusted,
                               extra=persisted_classes(target))
        try:
            content = reader.read()
        finally:
            reader.close()
    return build_model(where, target, content, header.get("versions"))


def build_model(where: str, target: type, content: Any, versions: Any = None,
                error: type = ModelFileError) -> Any:
    """A ``target`` with the parameters (earlier names mapped) and learned state of
    ``content`` (from :func:`model_content`)."""
    if not isinstance(content, dict) or not isinstance(content.get("params"), dict) \
            or not isinstance(content.get("state"), dict):
        raise error(f"{where} is corrupt: it holds no parameters and state")
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
        raise error(
            f"{where} holds a {_name_of(target)} with parameters this version does not "
            f"take ({exc}); it was written with {versions}"
        ) from exc
    model._set_state(content["state"])
    return model


def _unpickle_format_1(where: str, header: dict[str, Any], payload: bytes) -> Any:
    try:
        return pickle.loads(payload)  # trusted=True: the caller vouches for the file
    except Exception as exc:
        raise ModelFileError(
            f"{where} could not be unpickled ({type(exc).__name__}: {exc}); it was written "
            f"with {header.get('versions')}"
        ) from exc


def _model_class(where: str, name: str, trusted: bool) -> type:
    """The model class a file names, found without importing anything the file names: an
    already imported model class, or a registered one (whose module the registry names)."""
    found = _imported_model_class(name) or _registered_model_class(name)
    if found is not None:
        return found
    if trusted:
        try:
            return _import(name)
        except (ImportError, AttributeError) as exc:
            raise ModelFileError(
                f"{where} holds a {name} model, which cannot be imported here ({exc})"
            ) from exc
    raise ModelFileError(
        f"{where} holds a {name} model, which is neither registered (recinc models) nor "
        "imported in this process; nothing was imported for it. Import or register its "
        "class first, or load with trusted=True if you trust the file (that imports the "
        "module it names)"
    )


def _imported_model_class(name: str) -> type | None:
    todo = [SharedState]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if _name_of(sub) == name:
                return sub
            todo.append(sub)
    return None


def _registered_model_class(name: str) -> type | None:
    from .registry import _REGISTRY, _load_plugins

    _load_plugins()
    qualname = name.partition(":")[2]
    for spec in list(_REGISTRY.values()):
        target = spec.target
        if isinstance(target, str):
            # only a spec naming a class of the same name is imported (by the registry's name)
            if target.partition(":")[2].rpartition(".")[2] != qualname.rpartition(".")[2]:
                continue
            try:
                target = spec.load()
            except Exception:  # a missing extra, a broken plugin: not this file's class
                continue
        if isinstance(target, type) and _name_of(target) == name:
            return target
    return None


def persisted_classes(cls: type) -> dict[str, type]:
    """The extra classes a model class says its state holds (a class attribute
    ``persisted_types``: a tuple of classes), by name: loaded like the allow-list's."""
    types = getattr(cls, "persisted_types", ())
    return {_name_of(t): t for t in types if isinstance(t, type)}


def persisted_names(cls: type) -> frozenset[str]:
    return frozenset(persisted_classes(cls))


def library_versions() -> dict[str, str]:
    versions = {}
    for name in ("recinc_plugins", "numpy", "scipy", "pandas", "lightfm", "implicit", "surprise",
                 "river", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "?"))
    return versions

