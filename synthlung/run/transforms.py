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
  would give tumors of the wrong size. An image that does not look like HU
  (a normalised range, or raw stored units: :func:`synthlung.io.hu.hu_problem`)
  raises it too, the first time it is seen: placement and blending work in HU, and
  the chest CT windowed to 0..1 used to pass with no tumour placed and no error.
* ``label`` (optional): the CT's own tumors, kept as they are (values and
  dtype) and kept out of the placement zone; inserted tumors are written as
  :data:`synthlung.synthesis.insertion.TUMOR_CLASS` (1). Without a label, a uint8 0/1 map.
* ``lungs`` (optional): a precomputed lung mask in the image's grid (e.g. a
  host bank's ``lungs/<id>.nii.gz``); without it the lungs are segmented
  (:func:`synthlung.segment_lungs`, which raises ``InputError`` when it finds
  none) the first time an image is seen. Lungs or a label given as a ``MetaTensor``
  whose affine is not the image's (the same shape in another grid) raise
  ``InputError`` the first time the image is seen.
* instances: one id per inserted tumor (1..k), uint16 for NumPy/CuPy, int32
  for torch (torch has almost no uint16 operators). The dictionary and TorchIO
  forms make the map only when asked for it (``instance_key``, ``instance_name``,
  or the crop indices, which read it): a map nobody reads costs a whole-volume
  array and the page faults of its tumours' boxes.
* record: what was drawn and done (the case record of :func:`synthesize`, with
  ``"applied"``). The dictionary form makes it only with ``record_key`` or the crop
  indices (which read its boxes); without, its record is ``{"applied": True,
  "random_key": ...}`` and the call saves the 0.15 ms or so of building it.

With probability ``1 - prob`` a call leaves everything as it was: the image
object itself is returned, the label as given (or zeros), instances all 0.

Prepared hosts: the lungs, placement zone and distances of an image are made
once and kept in a bounded cache (``host_cache`` hosts, least recently used
out; each holds a uint8 lung mask, the zone, float32 distances and the zone's
voxel list, about 6.6 bytes per CT voxel, 49 MB for a 233 x 167 x 191 chest CT,
4 bytes a voxel more with ``fg_indices_key``'s label indices, and no reference to
any sample's memory) keyed by the image's identity: its source file name (a
``MetaTensor``'s ``filename_or_obj``), affine, and a digest of shape, dtype and
about 8192 voxels each of image, lungs and label (:func:`fingerprint`). The key
survives the copies that data loaders make (``CacheDataset`` deep-copies its
items), so a call then costs the synthesis only: one copy of the image (and of a
given label) in its own memory order (none with ``copy=False``), zeroed maps, and
work inside the tumours' boxes. Each DataLoader worker keeps its own cache for as long as
it lives: PyTorch starts new workers every epoch unless ``persistent_workers=True``, and
without it every epoch prepares its CTs again. A CT that
comes back under its name with other voxels, affine, lungs or label (as far as the
digests see) is prepared again each time, and the transform warns the first time: a
random transform before the insertion does that on every sample, and so does
``copy=False`` with a loader that hands every call the same arrays (the last call's
tumours stay in them; ``CacheDataset(copy_cache=False)``). A miss
costs the preparation (measured on the 2-core project machine for the 233 x 167 x 191
chest CT with its lungs given: 1.4-1.9 s for the first call, most of it the soft-tissue
noise's measurement and the zone's distance transforms, against 4-8 ms for the next with
one small tumour), so give ``host_cache`` at least the number of CTs one worker sees when
memory allows: the transform warns, once, when a named CT is prepared again unchanged after
the cache dropped it. With ``host_bank=`` (the bank ``synthlung hosts`` made of the same CT
files) a miss on one of its CTs takes the noise the bank measured and, when no lungs
are given, the bank's lung mask, and costs the zone only: 0.34 s against 1.4 s there
(``benchmarks/bench_calls.py``). The bank is used for a CT whose source file (a
``MetaTensor``'s ``filename_or_obj``, or ``source=``) is one of its images, in the
bank's grid (shape and affine); a CT resampled or reoriented since is prepared here
instead, with a warning. The case record then names the bank's host id and its
source files' sha256, as ``generate``'s do.

Patch mode (``patch_size=(px, py, pz)``, voxels): all of a call's tumours go, boxes
and all, inside one window of the patch's size around a zone voxel, and placement
works on that window only (cut from the prepared host, so zone and distances are
those of the whole volume). A sampler that centres positive patches on label voxels
(MONAI's ``RandCropByPosNegLabeld``, TorchIO's ``LabelSampler``; give it the
instance map as the label to centre on inserted tumours only) then trains on
patches that hold the inserted tumours: a patch centred on a voxel of a tumour that
spans at most half the patch holds that tumour whole unless the sampler had to
shift the patch at the volume's border, and the call's other tumours lie within
one patch of it. A tumour whose box does not fit in the window is recorded as not
placed (with a blending box of margin, a lung1-sized seed needs a window of about
48 voxels at 1.5 mm); the record's ``patch_window`` says where the window was.

Randomness is MONAI's: each transform holds a ``numpy.random.RandomState``
``R`` (``set_random_state(seed=...)`` or ``(state=...)``); every call draws
whether to insert and a 2 x 32-bit key from it, and the case is made from
``numpy.random.Generator(Philox(key))``. Two transforms seeded alike give
identical outputs, and the array and dictionary forms seeded alike agree. When
MONAI is installed the classes are ``monai.transforms.RandomizableTransform``
(and ``MapTransform``) instances, so ``Compose(...).set_random_state(seed)`` and
MONAI's data loaders seed them; without MONAI they work the same on their own.

What MONAI's ``DataLoader`` does to that seed (monai.data.utils.set_rnd): it walks
the dataset's attributes and calls ``set_random_state(seed=s + k)`` on the k-th
randomizable object it meets, which replaces any seed set before. With
``num_workers=0`` it does so once, when the loader is made, with ``s`` drawn from
torch's default generator (or the loader's ``generator=``); with workers, each
worker does it on its own copy of the dataset at start-up with
``s = torch's worker seed`` (the base seed drawn from that generator when an
epoch's iterator starts, plus the worker id; with ``persistent_workers=True`` the
workers start, and are seeded, once, and later epochs go on with their streams).
These transforms follow it like every MONAI random transform (the dictionary form
passes its seed to its array form), so a run repeats exactly when torch is seeded
(``torch.manual_seed`` or ``generator=``) and the number of workers is kept; another
number of workers gives other, equally valid, draws (the samples go to other workers'
streams).
The CPU kernels are compiled with Numba's cache, so workers start without
compiling them again, and inside a worker they run on one thread, as PyTorch
runs its own operators there (several workers already share the cores).

Example, a MONAI training loop (the host bank saves segmenting the lungs and measuring the noise)::

    from monai.data import DataLoader, Dataset
    from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, RandCropByPosNegLabeld,
                                  ScaleIntensityRanged)
    from synthlung.run.transforms import RandInsertTumorsd

    files = [{"image": "ct_0001.nii.gz", "label": "ct_0001_label.nii.gz"}]
    keys = ["image", "label"]
    train = Compose([
        LoadImaged(keys=keys),
        EnsureChannelFirstd(keys=keys),
        # each sample is the loader's own copy here, so copy=False may write into it; the
        # label's voxel indices come with the insertion (no search of the whole label per sample);
        # the host bank of these CTs gives each its lungs and noise (or load them: lungs_key=)
        RandInsertTumorsd("seed_bank/", prob=0.5, patch_size=(96, 96, 96), host_bank="hosts/",
                          instance_key="instances", fg_indices_key="fg", bg_indices_key="bg", copy=False),
        RandCropByPosNegLabeld(["image", "label", "instances"], label_key="label",
                               spatial_size=(96, 96, 96), pos=1, neg=1, num_samples=2,
                               fg_indices_key="fg", bg_indices_key="bg"),
        # after the crop: a patch costs less to scale than the CT
        ScaleIntensityRanged("image", a_min=-1000, a_max=400, b_min=0.0, b_max=1.0, clip=True),
    ]).set_random_state(seed=0)
    # persistent workers keep their prepared hosts from one epoch to the next
    for batch in DataLoader(Dataset(files, train), batch_size=2, num_workers=2, persistent_workers=True):
        ...  # batch["image"], batch["label"]: (2 x B, 1, 96, 96, 96), two patches per CT

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

import dataclasses
import hashlib
import json
import os
import sys
import warnings
from typing import Any, Hashable, NamedTuple

import numpy as np

from ..backend import _is_torch, array_module, asnumpy, like, to_array
from ..errors import InputError, SynthlungError
from ..hosts import Host, HostBank, make_host
from ..hosts.noise import host_noise
from ..io.hu import hu_problem
from ..lru import LRUCache
from ..seeds import SeedBank
from ..synthesis.case import SynthesisConfig, centre_sampler, memory_order, synthesize, zero_map
from ..volume import Volume, same_grid

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


def _one_thread_in_loader_workers(arr: Any) -> None:
    """In a torch DataLoader worker, run the CPU kernels on one Numba thread (this thread's setting).

    PyTorch does the same for its own operators there: several workers each
    starting one thread per core oversubscribe the CPU, and GNU OpenMP's waiting
    threads then cost more than the work (a small case took 3-5x longer on a loaded
    2-core machine than on one thread).
    """
    data = sys.modules.get("torch.utils.data")
    if array_module(arr) is np and data is not None and data.get_worker_info() is not None:
        import numba
        if numba.get_num_threads() != 1:
            numba.set_num_threads(1)


class Inserted(NamedTuple):
    """One call's outputs: image, label and instance map (input type/device/shape; the map None when the
    transform's ``want_instances`` is off, as the dictionary and TorchIO forms set it unless asked for
    the map), and the record (only ``applied`` and ``random_key`` when ``want_record`` is off, as the
    dictionary form sets it unless asked for the record)."""

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
    if _is_meta_tensor(original):  # as MONAI's own operators make theirs (MetaTensor.update_meta)
        out = out.as_subclass(MetaTensor).copy_meta_from(original)
    return out


def _instance_dtype(image: Any) -> type:
    """uint16 instance ids for NumPy/CuPy; int32 for torch, which lacks most uint16 operators."""
    return np.int32 if _is_torch(image) else np.uint16


def unchanged(image: Any, label: Any = None, key: list[int] | None = None, instances: bool = True) -> Inserted:
    """What a call that inserts nothing returns: the image itself, the label (or zeros), an
    instance map of zeros (None when ``instances`` is False)."""
    arr, channel = _view3d(image, "image")
    xp = array_module(arr)
    if label is None:
        label = _restore(xp.zeros(arr.shape, dtype=np.uint8), image, channel)
    ids = _restore(xp.zeros(arr.shape, dtype=_instance_dtype(image)), image, channel) if instances else None
    return Inserted(image, label, ids, {"applied": False, "random_key": key})


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


_FINGERPRINT_VOXELS = 8192


def fingerprint(arr: Any) -> bytes:
    """16-byte digest (SHA-256, cut) of an array's shape, dtype and about 8192 voxels on a regular
    sub-grid (b"" for None): the host cache's key, about 0.15 ms for a CT whose memory a data loader
    has just copied (out of the CPU caches). It tells one CT, lung mask or label from another; a
    change that falls between the sampled voxels goes unseen."""
    if arr is None:
        return b""
    stride = max(1, int(np.ceil((arr.size / _FINGERPRINT_VOXELS) ** (1.0 / 3.0))))
    digest = hashlib.sha256(repr((tuple(arr.shape), str(arr.dtype))).encode())  # SHA-NI: 2x blake2b here
    digest.update(np.ascontiguousarray(asnumpy(arr[::stride, ::stride, ::stride])).tobytes())
    return digest.digest()[:16]


def patch_window(host: Host, patch_size: tuple[int, int, int],
                 rng: np.random.Generator) -> tuple[slice, slice, slice] | None:
    """Patch mode's box for the tumours: ``patch_size`` voxels (clipped to the volume) around
    a zone voxel drawn with ``rng``; ``None`` when the zone is empty."""
    sampler = centre_sampler(host)
    if sampler.size == 0:
        return None
    shape = np.array(host.image.shape)
    width = np.minimum(np.array(patch_size), shape)
    lo = np.clip(np.array(sampler.draw(rng)) - width // 2, 0, shape - width)
    return tuple(slice(int(a), int(a + w)) for a, w in zip(lo, width))


def _window_host(host: Host, window: tuple[slice, slice, slice]) -> Host:
    """The host cut to ``window``: views of its arrays (zone and distances as in the whole volume)."""
    affine = host.image.affine.copy()
    affine[:3, 3] = host.image.voxel_to_world(np.array([w.start for w in window], dtype=np.float64))

    def cut(volume: Volume | None) -> Volume | None:
        return None if volume is None else Volume(volume.array[window], affine)

    return Host(cut(host.image), cut(host.lungs), cut(host.zone), cut(host.distance_mm), cut(host.tumors),
                host.record)


@dataclasses.dataclass
class _Prepared:
    """A host cache entry: the prepared host (no sample's arrays) and, made on first request, the
    flat indices of the given label's foreground and background (read-only, see ``crop_indices``)."""

    host: Host
    label_indices: tuple[np.ndarray, np.ndarray] | None = None


def _index_dtype(size: int) -> type:
    return np.int32 if size < 2**31 else np.int64


def _label_indices(label: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flat C-order indices (over ``shape``, as MONAI ravels a channel's array) of ``label > 0``
    and of the rest, NumPy int32 (int64 from 2^31 voxels), read-only; all background without a label."""
    size = int(np.prod(shape))
    if label is None:
        fg, bg = np.zeros(0, _index_dtype(size)), np.arange(size, dtype=_index_dtype(size))
    else:
        tumour = asnumpy(label > 0).ravel(order="C")
        fg, bg = (np.flatnonzero(m).astype(_index_dtype(size)) for m in (tumour, ~tumour))
    for a in (fg, bg):
        a.flags.writeable = False
    return fg, bg


def _tumor_boxes(record: dict) -> list[tuple[slice, slice, slice]]:
    return [tuple(slice(o, o + n) for o, n in zip(t["offset_voxels"], t["box_shape"])) for t in record["tumors"]]


def _same_shape(arr: Any, image: Any, name: str) -> Any:
    """``arr`` (lungs or label), checked to have the image's shape and device."""
    if tuple(arr.shape) != tuple(image.shape):
        raise InputError(f"{name} shape {tuple(arr.shape)} differs from the image's {tuple(image.shape)}")
    if array_module(arr) is not array_module(image):
        raise InputError(f"{name} is on another device than the image ({array_module(arr).__name__} vs "
                         f"{array_module(image).__name__}); move it first")
    return arr


def _same_affine(given: Any, affine: np.ndarray, what: str, name: str) -> None:
    """InputError when ``given`` (lungs or label) is a MetaTensor whose affine places it elsewhere
    than the image's (:func:`~synthlung.volume.same_grid`): the same shape in another grid."""
    if not _is_meta_tensor(given):
        return
    other = _affine(given, None)
    if not same_grid(other, affine):
        where = given.meta.get("filename_or_obj") or what
        raise InputError(f"{where}: {what} in another grid than the image {name} (affine differs by up to "
                         f"{float(np.abs(other - affine).max()):.3g}); resample to the image's grid first")


class RandInsertTumors(RandomizableTransform):
    """Insert tumors drawn from a seed bank into a CT, with probability ``prob``.

    ``seed_bank``: a :class:`~synthlung.seeds.SeedBank` or the path of one.
    ``config``: a :class:`~synthlung.synthesis.case.SynthesisConfig` (or a mapping of
    its options). ``zone_kw``: options of :func:`synthlung.placement_zone` (mm, HU).
    ``host_cache``: how many prepared hosts (lungs, zone, distances) to keep, keyed
    by the image's identity (see the module docstring). ``patch_size``: patch mode
    (voxels, see the module docstring), or None. ``copy=False`` writes the tumours
    into the input image itself (their boxes only), and into the input label when one
    is given, and returns those objects, saving the whole-volume copies: only for
    inputs that are the call's own, e.g. a MONAI
    ``Dataset`` sample or a ``CacheDataset`` one with ``copy_cache=True`` (its default).
    ``host_bank``: a :class:`~synthlung.hosts.HostBank` (or its folder) of the CTs the
    loader reads: a CT not yet prepared whose source file is one of the bank's, in the
    bank's grid, takes the bank's lung mask (when no lungs are given) and soft-tissue
    noise instead of segmenting and measuring them (see the module docstring).
    Calling returns ``(image, label, instances)`` and keeps the case record in
    ``last_record``; :meth:`apply` returns all four as :class:`Inserted` (types
    and shapes: see the module docstring).
    """

    def __init__(self, seed_bank: SeedBank | str | os.PathLike, config: SynthesisConfig | dict | None = None,
                 prob: float = 1.0, zone_kw: dict | None = None, host_cache: int = 8,
                 patch_size: Any = None, copy: bool = True, host_bank: HostBank | str | os.PathLike | None = None):
        RandomizableTransform.__init__(self, prob)
        self.hosts = LRUCache(host_cache)
        self.host_bank = host_bank if host_bank is None or isinstance(host_bank, HostBank) else HostBank.open(host_bank)
        # the bank's CTs by real path (a loader may name a CT through a link, the bank its target)
        self._bank_index = {} if self.host_bank is None else {
            os.path.realpath(e["image"]): i for i, e in enumerate(self.host_bank.entries)}
        self.copy = bool(copy)
        self.patch_size = None
        if patch_size is not None:
            self.patch_size = tuple(int(v) for v in np.broadcast_to(np.asarray(patch_size), (3,)))
            if min(self.patch_size) < 2:
                raise InputError(f"patch_size {patch_size!r}: expected three sizes of at least 2 voxels")
        self.seed_bank = SeedBank.open(seed_bank) if isinstance(seed_bank, (str, os.PathLike)) else seed_bank
        if isinstance(config, dict):
            config = SynthesisConfig.from_dict(config)
        self.config = config or SynthesisConfig()
        self.zone_kw = dict(zone_kw or {})
        self.key: list[int] | None = None
        self.last_record: dict | None = None  # the record of the latest __call__
        self.want_indices = False  # keep the label's crop indices in the host cache (see crop_indices)
        self.want_instances = True  # make the instance map (Inserted.instances None without)
        self.want_record = True  # make the case record (without: Inserted.record says only applied and key)
        self._entry: _Prepared | None = None  # the host cache entry of the latest host lookup
        self._prepared_as: dict[str, Hashable] = {}  # a named CT's cache key when it was last prepared
        self._said: set[str] = set()  # which of _note_prepared's warnings were given (each once per transform)

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

    def insert_with_key(self, key: Any, image: Any, lungs: Any = None, label: Any = None, affine: Any = None,
                        source: str | None = None) -> Inserted:
        """Insert, always, with the generator of ``key`` (two integers) instead of a draw
        from ``R``: for callers that draw their randomness elsewhere (the TorchIO
        transform draws it from torch)."""
        self._do_transform = True
        self.key = [int(k) for k in key]
        return self.apply(image, lungs, label, affine, source)

    def host(self, image: Any, lungs: Any = None, label: Any = None, affine: Any = None,
             source: str | None = None) -> Host:
        """The :class:`~synthlung.hosts.Host` of the inputs; its image shares the input's memory.

        Lungs, zone and distances are prepared once per image identity and kept in
        ``hosts`` (a bounded cache); a later call with the same CT reuses them.
        ``source`` names the image (cache key, host id; default: a MetaTensor's
        ``filename_or_obj``).
        """
        arr, _ = _view3d(image, "image")
        aff = _affine(image, affine)
        lung_arr = None if lungs is None else _same_shape(_view3d(lungs, "lungs")[0], arr, "lungs")
        tumor_arr = None if label is None else _same_shape(_view3d(label, "label")[0], arr, "label")
        if source is None and _is_meta_tensor(image):
            source = image.meta.get("filename_or_obj")
        name = str(source or type(image).__name__)
        tumors = None if tumor_arr is None else Volume(tumor_arr, aff)

        def prepare() -> _Prepared:
            problem = hu_problem(arr)
            if problem:
                raise InputError(f"{name}: {problem}; the transform needs the CT in HU: put it before any "
                                 "intensity scaling (e.g. ScaleIntensityRanged)")
            for given, what in ((lungs, "lungs"), (label, "label")):
                _same_affine(given, aff, what, name)
            lungs_vol = None if lung_arr is None else Volume(lung_arr, aff)
            host_id, record = name, None
            banked = None if source is None else self._banked(str(source), tuple(arr.shape), aff)
            if banked is not None:
                entry, lungs_path = banked
                host_id, record = entry["id"], dict(entry["record"])  # its id, sources' sha256, noise
                if lungs_vol is None:
                    from ..io import load
                    bank_lungs = asnumpy(load(lungs_path, check_units=False).array).astype(np.uint8)
                    lungs_vol = Volume(array_module(arr).asarray(bank_lungs), aff)
            made = make_host(Volume(arr, aff), tumors, host_id=host_id, lungs=lungs_vol, record=record,
                             **self.zone_kw)
            # kept without this call's image and label (each call brings its own) and with the lungs
            # as uint8 (a loader gives float32): no reference to a sample's memory stays in the cache
            lungs_u8 = made.lungs.with_array(array_module(arr).array(made.lungs.array, dtype=np.uint8, copy=True))
            if source:  # a name to go by: a MetaTensor's file, or source=
                self._note_prepared(name, key)
            return _Prepared(dataclasses.replace(made, image=None, lungs=lungs_u8, tumors=None))

        key = (name, aff.tobytes(), fingerprint(arr), fingerprint(lung_arr), fingerprint(tumor_arr))
        self._entry = self.hosts.get(key, prepare)
        if self._entry.label_indices is None and self.want_indices:
            self._entry.label_indices = _label_indices(tumor_arr, tuple(arr.shape))
        return dataclasses.replace(self._entry.host, image=Volume(arr, aff), tumors=tumors)

    def _note_prepared(self, name: str, key: Hashable) -> None:
        """Keep the cache key the CT named ``name`` was prepared under, and warn, once per transform
        for each case, when it was prepared before (each costs 1-2 s on a chest CT with its lungs
        given):

        * under another key: its voxels, affine, lungs or label changed under the same name, so
          it is prepared on every such call. A random transform before the insertion does this
          on every sample; a loader that hands every call the same arrays does it with
          ``copy=False`` (the last call's tumours are in them);
        * under the same key: the cache dropped it for others, and a loader that cycles through
          more CTs than ``host_cache`` prepares one on nearly every call.
        """
        last = self._prepared_as.get(name)
        self._prepared_as[name] = key
        if last is None:
            return
        said = "dropped" if last == key else "changed"
        if said in self._said:
            return
        self._said.add(said)
        cost = "each costs a host preparation (1-2 s on a chest CT with its lungs given)"
        if said == "changed":
            warnings.warn(f"{name}: prepared again, its voxels, affine, lungs or label having changed under that "
                          f"name since it was last prepared; {cost}. Put the insertion before random intensity or "
                          "spatial transforms, and with copy=False give each call its own copy of the sample (e.g. "
                          "CacheDataset's default copy_cache=True)", stacklevel=5)
        else:
            warnings.warn(f"{name}: prepared again, unchanged, after the host cache (host_cache="
                          f"{self.hosts.maxsize}) dropped it for other CTs; a loader cycling through more CTs than "
                          f"that prepares one on nearly every call, and {cost}. Give host_cache at least the "
                          "number of CTs one worker sees (about 6.6 bytes per CT voxel each), or host_bank= to "
                          "make a preparation cheaper", stacklevel=5)

    def _banked(self, source: str, shape: tuple[int, int, int], affine: np.ndarray) -> tuple[dict, Any] | None:
        """The host bank's entry and lung-mask path for the CT at ``source``, or None: not in the
        bank, or (with a warning) in another grid than the bank's (resampled or reoriented since).
        The grid is read from the lung mask's header (the bank writes NIfTI), not its voxels."""
        i = self._bank_index.get(os.path.realpath(source))
        if i is None:
            return None
        import nibabel as nib
        entry = self.host_bank.entries[i]
        path = self.host_bank.root / entry["lungs"]
        header = nib.load(str(path))
        if tuple(header.shape[:3]) != shape or not same_grid(header.affine, affine):
            warnings.warn(f"{source}: not in the grid of host bank {self.host_bank.root}'s entry {entry['id']} "
                          f"(shape {shape} against {tuple(header.shape[:3])}, or another affine): its lungs and "
                          "noise are not used, this CT's are made here", stacklevel=4)
            return None
        return entry, path

    def crop_indices(self, inserted: Inserted) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of the latest call's label foreground and background, for MONAI's
        ``RandCropByPosNegLabeld(fg_indices_key=..., bg_indices_key=...)``: C order over (X, Y, Z),
        as ``FgBgToIndicesd`` makes them, NumPy int32 (int64 from 2^31 voxels), on the CPU.

        The given label's own indices are found once per prepared host (with ``want_indices``
        set: 4 bytes a voxel more in the cache) and kept read-only; each call adds only its
        inserted tumours' voxels to the foreground (their boxes). The background is the given
        label's, so it still holds the inserted voxels: a negative patch is centred on one
        with the odds of their share of the background (about 1e-4 for one small tumour in
        a 7 Mvoxel CT); MONAI's negative patches are not tumour-free anyway. ``label > 0`` is
        foreground, as in ``FgBgToIndicesd`` without an image threshold.
        """
        if self._entry is None or self._entry.label_indices is None:
            raise RuntimeError("crop_indices needs a call first, with want_indices=True")
        fg, bg = self._entry.label_indices
        record, instances = inserted.record, inserted.instances
        if not record.get("tumors"):
            return fg, bg
        arr, _ = _view3d(instances, "instances")
        shape, added = tuple(arr.shape), [fg]
        for box, tumor in zip(_tumor_boxes(record), record["tumors"]):  # boxes may overlap: by instance id
            ijk = np.nonzero(asnumpy(arr[box]) == tumor["instance"])
            added.append(np.ravel_multi_index(tuple(i + b.start for i, b in zip(ijk, box)), shape).astype(fg.dtype))
        return np.concatenate(added), bg

    def apply(self, image: Any, lungs: Any = None, label: Any = None, affine: Any = None,
              source: str | None = None) -> Inserted:
        """Insert with the current draw (no new randomness); the record says what was done."""
        if not self._do_transform:
            return unchanged(image, label, self.key, self.want_instances)
        arr, channel = _view3d(image, "image")
        _check_cpu_threads(arr)
        _one_thread_in_loader_workers(arr)
        host = self.host(image, lungs, label, affine, source)
        rng = self.generator()
        window = None
        if self.patch_size is not None:
            if self.config.texture:
                host_noise(host)  # measured on the whole host, before it is cut
            window = patch_window(host, self.patch_size, rng)
        cut = host if window is None else _window_host(host, window)
        xp, order = array_module(arr), memory_order(arr)
        if label is not None:  # the given label (or with copy=False the label itself) gets the tumours
            given, label_channel = _view3d(label, "label")
            out_label, target = (given if not self.copy else xp.array(given, copy=True, order="K")), label
        elif window is not None:  # zeros of the whole volume; the window's part is written
            out_label, label_channel, target = zero_map(xp, arr.shape, np.uint8, order), channel, image
        else:  # synthesize's own label map is the output
            out_label, label_channel, target = None, channel, image
        case = synthesize(cut, self.seed_bank, rng, self.config, key=self.key, inplace=not self.copy,
                          instance_dtype=_instance_dtype(image) if self.want_instances else None,
                          label_map=None if out_label is None else out_label if window is None else out_label[window],
                          record=self.want_record)
        record = ({"random_key": self.key} if case.record is None
                  else case.record if window is None else _window_record(case.record, window))
        if out_label is None:
            out_label = case.label.array
        if not self.copy:
            out_image = image  # written in place: the tumours' boxes
        elif window is None:
            out_image = _restore(case.image.array, image, channel)
        else:
            full = xp.array(arr, copy=True, order="K")
            full[window] = case.image.array
            out_image = _restore(full, image, channel)
        instances = None if case.instances is None else case.instances.array
        if instances is not None and window is not None:  # the window's map into zeros of the whole volume
            instances = zero_map(xp, arr.shape, instances.dtype, order)
            instances[window] = case.instances.array
        label_out = label if label is not None and not self.copy else _restore(out_label, target, label_channel)
        return Inserted(out_image, label_out, None if instances is None else _restore(instances, image, channel),
                        {"applied": True, **record})


def _window_record(record: dict, window: tuple[slice, slice, slice]) -> dict:
    """The record of a case made in ``window``, with voxel positions in the whole volume."""
    lo = [w.start for w in window]
    tumors = [{**t, "offset_voxels": [o + a for o, a in zip(t["offset_voxels"], lo)],
               "centre_voxel": [c + a for c, a in zip(t["centre_voxel"], lo)]} for t in record["tumors"]]
    return {**record, "tumors": tumors,
            "patch_window": {"offset_voxels": lo, "shape": [w.stop - w.start for w in window]}}


class RandInsertTumorsd(RandomizableTransform, MapTransform):
    """Dictionary form of :class:`RandInsertTumors`.

    Reads ``data[image_key]`` (and ``label_key``, ``lungs_key`` when present),
    writes the image and label back (a missing label is created), the instance
    map under ``instance_key`` and the case record, as a JSON string (so that
    batches collate), under ``record_key`` when those are given (without
    ``instance_key`` or the indices keys no instance map is made: 0.25-0.35 ms a
    sample less on the chest CT; without ``record_key`` or the indices keys no case
    record: about 0.15 ms less). The label's own
    tumors are kept and excluded from placement. ``config``, ``zone_kw``,
    ``host_cache``, ``patch_size``, ``copy`` and ``host_bank``: as for :class:`RandInsertTumors`.

    ``fg_indices_key`` and ``bg_indices_key`` (give both): write the output label's
    foreground and background voxel indices there, for ``RandCropByPosNegLabeld`` with
    the same keys, which then does not search the whole label on every sample (as
    ``FgBgToIndicesd`` before a cache would, but a label that changes every sample cannot
    be cached). The given label's own indices are kept with the prepared host and each
    sample adds its inserted tumours (:meth:`RandInsertTumors.crop_indices`, which says
    what the background holds); calls that insert nothing write the label's own.
    """

    def __init__(self, seed_bank: SeedBank | str | os.PathLike, config: SynthesisConfig | dict | None = None,
                 prob: float = 1.0, zone_kw: dict | None = None, host_cache: int = 8, patch_size: Any = None,
                 copy: bool = True, *, image_key: str = "image", label_key: str = "label", lungs_key: str | None = None,
                 instance_key: str | None = None, record_key: str | None = None, fg_indices_key: str | None = None,
                 bg_indices_key: str | None = None, host_bank: HostBank | str | os.PathLike | None = None,
                 allow_missing_keys: bool = False):
        MapTransform.__init__(self, [image_key, label_key], allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if (fg_indices_key is None) != (bg_indices_key is None):
            raise InputError("fg_indices_key and bg_indices_key: give both (RandCropByPosNegLabeld reads them "
                             "together) or neither")
        self.image_key, self.label_key, self.lungs_key = image_key, label_key, lungs_key
        self.instance_key, self.record_key = instance_key, record_key
        self.fg_indices_key, self.bg_indices_key = fg_indices_key, bg_indices_key
        self.inserter = RandInsertTumors(seed_bank, config, 1.0, zone_kw, host_cache, patch_size, copy, host_bank)
        self.inserter.want_indices = fg_indices_key is not None
        # the instance map and the record only where they are written out or the crop indices read them
        self.inserter.want_instances = instance_key is not None or fg_indices_key is not None
        self.inserter.want_record = record_key is not None or fg_indices_key is not None

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
        lungs = d[self.lungs_key] if self.lungs_key is not None else None
        if self._do_transform:
            out = self.inserter.apply(image, lungs, label)
        else:
            if self.fg_indices_key is not None:
                self.inserter.host(image, lungs, label)  # the label's own indices, kept with its host
            out = unchanged(image, label, self.inserter.key, self.inserter.want_instances)
        if self.fg_indices_key is not None:
            d[self.fg_indices_key], d[self.bg_indices_key] = self.inserter.crop_indices(out)
        d[self.image_key], d[self.label_key] = out.image, out.label
        if self.instance_key is not None:
            d[self.instance_key] = out.instances
        if self.record_key is not None:
            d[self.record_key] = json.dumps(out.record)
        return d
