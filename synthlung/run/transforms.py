"""On-the-fly tumor insertion in PyTorch/MONAI training loops.

:class:`RandInsertTumors` (array form) and :class:`RandInsertTumorsd`
(dictionary form) insert tumors from a seed bank into the CT they are given,
on the device the CT lives on: a CPU torch tensor or NumPy array runs the CPU
kernels, a CUDA torch tensor or CuPy array the CUDA kernels. Torch tensors are
shared with NumPy/CuPy through DLPack, never copied; the outputs come back as
the input's type, on its device, in its shape convention ((X, Y, Z) or
channel-first (1, X, Y, Z)), MONAI ``MetaTensor`` metadata kept.

Inputs and outputs:

* the image must be in HU (insert before any intensity scaling) and needs its
  voxel -> world affine (mm): a MONAI ``MetaTensor``'s ``.affine`` (RAS, or LPS
  converted to RAS when its ``space`` says so), or ``affine=``. Without either
  the call raises :class:`~synthlung.errors.InputError`: a silent 1 mm spacing
  would give tumors of the wrong size.
* ``label`` (optional): the CT's own tumors, kept as they are (values and
  dtype) and kept out of the placement zone; inserted tumors are written as
  :data:`synthlung.synthesis.insertion.TUMOR_CLASS` (1). Without a label, a uint8 0/1 map.
* ``lungs`` (optional): a precomputed lung mask in the image's grid (e.g. a
  host bank's ``lungs/<id>.nii.gz``); without it the lungs are segmented on
  every call (:func:`synthlung.segment_lungs`), which raises ``InputError``
  when it finds none.
* instances: one id per inserted tumor (1..k), uint16 for NumPy/CuPy, int32
  for torch (torch has almost no uint16 operators).

With probability ``1 - prob`` a call leaves everything as it was: the image
object itself is returned, the label as given (or zeros), no instances.

Randomness is MONAI's: each transform holds a ``numpy.random.RandomState``
``R`` (``set_random_state(seed=...)`` or ``(state=...)``); every call draws
whether to insert and a 2 x 32-bit key from it, and the case is made from
``numpy.random.Generator(Philox(key))``. Two transforms seeded alike give
identical outputs, and the array and dictionary forms seeded alike agree. When
MONAI is installed the classes are ``monai.transforms.RandomizableTransform``
(and ``MapTransform``) instances, so ``Compose(...).set_random_state(seed)`` and
MONAI's data loaders seed them; without MONAI they work the same on their own.

Example, a MONAI training loop (the host bank's lung masks save segmenting)::

    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityRanged
    from synthlung.run.transforms import RandInsertTumorsd

    files = [{"image": "ct_0001.nii.gz", "label": "ct_0001_label.nii.gz",
              "lungs": "hosts/lungs/ct_0001.nii.gz"}]
    train = Compose([
        LoadImaged(keys=["image", "label", "lungs"]),
        EnsureChannelFirstd(keys=["image", "label", "lungs"]),
        RandInsertTumorsd("seed_bank/", prob=0.5, lungs_key="lungs", instance_key="instances"),
        ScaleIntensityRanged("image", a_min=-1000, a_max=400, b_min=0.0, b_max=1.0, clip=True),
    ]).set_random_state(seed=0)
    for batch in DataLoader(Dataset(files, train), batch_size=2, num_workers=2):
        ...  # batch["image"], batch["label"]: (B, 1, X, Y, Z)

DataLoader workers are forked by default. Numba's GNU OpenMP threads (its
fastest layer here) cannot run in a process forked after its parent used them,
e.g. after building the seed bank in the training script. Then start the
workers with ``DataLoader(..., multiprocessing_context="spawn")`` (or
``"forkserver"``), as CUDA needs anyway; a transform called in such a forked
worker raises an error that says so, instead of the worker dying silently.

Or on a CUDA tensor directly (``ct`` a (1, X, Y, Z) MetaTensor on the GPU)::

    insert = RandInsertTumors("seed_bank/").set_random_state(seed=0)
    image, label, instances = insert(ct, lungs=lungs)
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Hashable, NamedTuple

import numpy as np

from ..backend import _is_torch, array_module, asnumpy, like, to_array
from ..errors import InputError, SynthlungError
from ..hosts import Host, make_host
from ..seeds import SeedBank
from ..synthesis.case import SynthesisConfig, synthesize
from ..synthesis.insertion import TUMOR_CLASS
from ..volume import Volume

__all__ = ["HAVE_MONAI", "Inserted", "RandInsertTumors", "RandInsertTumorsd", "unchanged"]

_MAX_SEED = 2**32  # MONAI's MAX_SEED: integer seeds are taken modulo this


try:
    from monai.data import MetaTensor
    from monai.transforms import MapTransform, RandomizableTransform
    HAVE_MONAI = True
except ImportError:
    HAVE_MONAI = False
    MetaTensor = None

    class RandomizableTransform:  # type: ignore[no-redef]
        """Stand-in for ``monai.transforms.RandomizableTransform`` (same seeding, same draws)."""

        R: np.random.RandomState = np.random.RandomState()

        def __init__(self, prob: float = 1.0, do_transform: bool = True):
            self._do_transform = do_transform
            self.prob = min(max(prob, 0.0), 1.0)

        def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
            """Seed ``R`` from an integer, or use the given ``RandomState``; returns self."""
            if seed is not None:
                self.R = np.random.RandomState(int(seed) % _MAX_SEED)
            elif state is not None:
                if not isinstance(state, np.random.RandomState):
                    raise TypeError(f"state must be None or a numpy.random.RandomState, not {type(state).__name__}")
                self.R = state
            else:
                self.R = np.random.RandomState()
            return self

        def randomize(self, data: Any) -> None:
            self._do_transform = self.R.rand() < self.prob

    class MapTransform:  # type: ignore[no-redef]
        """Stand-in for ``monai.transforms.MapTransform``: ``keys`` and ``allow_missing_keys``."""

        def __init__(self, keys: Any, allow_missing_keys: bool = False):
            self.keys: tuple[Hashable, ...] = tuple(keys)
            self.allow_missing_keys = allow_missing_keys


_FORKED_AFTER_OPENMP = False


def _note_fork() -> None:
    """In a forked child: remember whether the parent had started Numba's GNU OpenMP threads."""
    global _FORKED_AFTER_OPENMP
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    _FORKED_AFTER_OPENMP = bool(parallel is not None and parallel._is_initialized
                                and parallel._threading_layer == "omp")


os.register_at_fork(after_in_child=_note_fork)


def _check_cpu_threads(arr: Any) -> None:
    """Refuse, with a clear message, CPU work that GNU OpenMP would kill this forked process for."""
    if _FORKED_AFTER_OPENMP and array_module(arr) is np:
        raise SynthlungError(
            "this process was forked after its parent ran synthlung's CPU kernels on GNU OpenMP "
            "threads, which cannot run in a forked child: start DataLoader workers with "
            "multiprocessing_context='spawn' (or 'forkserver'), or set NUMBA_THREADING_LAYER=workqueue")


class Inserted(NamedTuple):
    """One call's outputs: image, label and instance map (input type/device/shape), and the record."""

    image: Any
    label: Any
    instances: Any
    record: dict


def _is_meta_tensor(x: Any) -> bool:
    return MetaTensor is not None and isinstance(x, MetaTensor)


def _view3d(x: Any, name: str) -> tuple[Any, bool]:
    """A NumPy/CuPy view of ``x`` as (X, Y, Z), and whether it had a leading channel axis."""
    arr = to_array(x)
    if arr.ndim == 4 and arr.shape[0] == 1:
        return arr[0], True
    if arr.ndim == 3:
        return arr, False
    raise InputError(f"{name}: expected shape (X, Y, Z) or (1, X, Y, Z), got {tuple(arr.shape)}")


def _restore(result: Any, original: Any, channel: bool) -> Any:
    """``result`` (a 3-D NumPy/CuPy array) in the type, shape convention and metadata of ``original``."""
    out = like(result[None] if channel else result, original)
    if _is_meta_tensor(original):
        out = MetaTensor(out)
        out.copy_meta_from(original)
    return out


def _instance_dtype(image: Any) -> type:
    """uint16 instance ids for NumPy/CuPy; int32 for torch, which lacks most uint16 operators."""
    return np.int32 if _is_torch(image) else np.uint16


def unchanged(image: Any, label: Any = None, key: list[int] | None = None) -> Inserted:
    """What a call that inserts nothing returns: the image itself, the label (or zeros), no instances."""
    arr, channel = _view3d(image, "image")
    xp = array_module(arr)
    if label is None:
        label = _restore(xp.zeros(arr.shape, dtype=np.uint8), image, channel)
    instances = _restore(xp.zeros(arr.shape, dtype=_instance_dtype(image)), image, channel)
    return Inserted(image, label, instances, {"applied": False, "random_key": key})


def _affine(image: Any, affine: Any) -> np.ndarray:
    """The voxel -> RAS world (mm) matrix: ``affine`` if given, else the MetaTensor's own."""
    if affine is None and _is_meta_tensor(image):
        affine = asnumpy(image.affine).astype(np.float64)
        if str(image.meta.get("space", "RAS")).upper().endswith("LPS"):
            affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    if affine is None:
        raise InputError("the image has no affine: pass affine= (4x4 voxel -> RAS mm) or a MONAI MetaTensor; "
                         "tumor sizes are in mm and need the voxel spacing")
    affine = np.asarray(asnumpy(affine), dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"affine: expected a 4x4 matrix, got shape {affine.shape}")
    return affine


def _same_grid(arr: Any, image: Any, name: str) -> Any:
    if tuple(arr.shape) != tuple(image.shape):
        raise InputError(f"{name} shape {tuple(arr.shape)} differs from the image's {tuple(image.shape)}")
    if array_module(arr) is not array_module(image):
        raise InputError(f"{name} is on another device than the image ({array_module(arr).__name__} vs "
                         f"{array_module(image).__name__}); move it first")
    return arr


class RandInsertTumors(RandomizableTransform):
    """Insert tumors drawn from a seed bank into a CT, with probability ``prob``.

    ``seed_bank``: a :class:`~synthlung.seeds.SeedBank` or the path of one.
    ``config``: a :class:`~synthlung.synthesis.case.SynthesisConfig` (or a mapping of
    its options). ``zone_kw``: options of :func:`synthlung.placement_zone` (mm, HU).
    Calling returns ``(image, label, instances)`` and keeps the case record in
    ``last_record``; :meth:`apply` returns all four as :class:`Inserted` (types
    and shapes: see the module docstring).
    """

    def __init__(self, seed_bank: SeedBank | str | os.PathLike, config: SynthesisConfig | dict | None = None,
                 prob: float = 1.0, zone_kw: dict | None = None):
        RandomizableTransform.__init__(self, prob)
        self.seed_bank = SeedBank.open(seed_bank) if isinstance(seed_bank, (str, os.PathLike)) else seed_bank
        if isinstance(config, dict):
            config = SynthesisConfig.from_dict(config)
        self.config = config or SynthesisConfig()
        self.zone_kw = dict(zone_kw or {})
        self.key: list[int] | None = None
        self.last_record: dict | None = None  # the record of the latest __call__

    def randomize(self, data: Any = None) -> None:
        """Draw, from ``R``, whether to insert and the key of this call's generator."""
        super().randomize(None)
        self.key = [int(k) for k in self.R.randint(0, _MAX_SEED, size=2)]

    def generator(self) -> np.random.Generator:
        """The generator of the current draw: ``Generator(Philox(key))``."""
        if self.key is None:
            raise RuntimeError("call randomize() (or the transform) before generator()")
        return np.random.Generator(np.random.Philox(key=np.array(self.key, dtype=np.uint64)))

    def __call__(self, image: Any, lungs: Any = None, label: Any = None, affine: Any = None) -> tuple[Any, Any, Any]:
        """Draw, then insert: ``(image, label, instances)`` as the input's type, device and shape."""
        self.randomize()
        out = self.apply(image, lungs, label, affine)
        self.last_record = out.record
        return out.image, out.label, out.instances

    def host(self, image: Any, lungs: Any = None, label: Any = None, affine: Any = None) -> Host:
        """The :class:`~synthlung.hosts.Host` made from the inputs; its image shares the input's memory."""
        arr, _ = _view3d(image, "image")
        aff = _affine(image, affine)
        lung_vol = None if lungs is None else Volume(_same_grid(_view3d(lungs, "lungs")[0], arr, "lungs"), aff)
        tumors = None if label is None else Volume(_same_grid(_view3d(label, "label")[0], arr, "label"), aff)
        name = image.meta.get("filename_or_obj") if _is_meta_tensor(image) else None
        return make_host(Volume(arr, aff), tumors, host_id=str(name or type(image).__name__), lungs=lung_vol,
                         **self.zone_kw)

    def apply(self, image: Any, lungs: Any = None, label: Any = None, affine: Any = None) -> Inserted:
        """Insert with the current draw (no new randomness); the record says what was done."""
        if not self._do_transform:
            return unchanged(image, label, self.key)
        arr, channel = _view3d(image, "image")
        _check_cpu_threads(arr)
        case = synthesize(self.host(image, lungs, label, affine), self.seed_bank, self.generator(), self.config,
                          key=self.key)
        instances = case.instances.array
        if label is None:
            out_label = _restore(case.label.array, image, channel)
        else:
            given, label_channel = _view3d(label, "label")
            merged = given.copy()
            merged[instances > 0] = TUMOR_CLASS
            out_label = _restore(merged, label, label_channel)
        record = {"applied": True, **case.record}
        return Inserted(_restore(case.image.array, image, channel), out_label,
                        _restore(instances.astype(_instance_dtype(image), copy=False), image, channel), record)


class RandInsertTumorsd(RandomizableTransform, MapTransform):
    """Dictionary form of :class:`RandInsertTumors`.

    Reads ``data[image_key]`` (and ``label_key``, ``lungs_key`` when present),
    writes the image and label back (a missing label is created), the instance
    map under ``instance_key`` and the case record, as a JSON string (so that
    batches collate), under ``record_key`` when those are given. The label's own
    tumors are kept and excluded from placement.
    """

    def __init__(self, seed_bank: SeedBank | str | os.PathLike, config: SynthesisConfig | dict | None = None,
                 prob: float = 1.0, zone_kw: dict | None = None, *, image_key: str = "image",
                 label_key: str = "label", lungs_key: str | None = None, instance_key: str | None = None,
                 record_key: str | None = None, allow_missing_keys: bool = False):
        MapTransform.__init__(self, [image_key, label_key], allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key, self.lungs_key = image_key, label_key, lungs_key
        self.instance_key, self.record_key = instance_key, record_key
        self.inserter = RandInsertTumors(seed_bank, config, 1.0, zone_kw)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed this transform and its array form alike; returns self."""
        super().set_random_state(seed, state)
        self.inserter.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.inserter.randomize()

    def __call__(self, data: Any) -> dict:
        d = dict(data)
        self.randomize()
        if self.image_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"key {self.image_key!r} is not in the data (keys: {', '.join(map(str, d))})")
        image, label = d[self.image_key], d.get(self.label_key)
        if self._do_transform:
            lungs = d[self.lungs_key] if self.lungs_key is not None else None
            out = self.inserter.apply(image, lungs, label)
        else:
            out = unchanged(image, label, self.inserter.key)
        d[self.image_key], d[self.label_key] = out.image, out.label
        if self.instance_key is not None:
            d[self.instance_key] = out.instances
        if self.record_key is not None:
            d[self.record_key] = json.dumps(out.record)
        return d
