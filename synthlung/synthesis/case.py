"""One synthetic case: draw tumors, morph them into the host grid, place and blend them.

:func:`synthesize` works on a host whose arrays are NumPy or CuPy; everything
stays on that device (seeds, read from disk, are copied to it once each). The
only device-to-host traffic is a few scalars per placement try.

A case's cost is bounded by its tumors' boxes, not by the host: the image is
copied once, in the host array's own memory order (nibabel's Fortran order
stays Fortran: no transposing copy), the label and instance maps start as
zeros in that order (fresh zero pages from the kernel, :func:`zero_map`: no pass
over the volume to clear them), and placement reads the lungs and the tumors already
there box by box (:class:`Occupancy`) instead of building whole-volume maps.
The zone's candidate centres are listed once per host and kept.
"""
from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..backend import array_module
from ..errors import InputError
from ..hosts.noise import host_noise
from ..lru import LRUCache
from ..seeds.contact import measure_contact
from ..volume import Volume
from .insertion import TUMOR_CLASS, insert, seed_pad
from .morphing import MorphParams, morph, thick_slice_axis
from .placement import (
    CentreSampler,
    Placement,
    PlacementRules,
    box_slices,
    outward_normal,
    place_against_pleura,
    pleural_sites,
    rotation_aligning,
    sample_placement,
)
from .sizing import Burden, BurdenTally, SizePolicy, sphere_diameter_mm

BLEND_METHODS = ("alpha", "poisson", "poisson-textbook", "replace")


@dataclass(frozen=True)
class SynthesisConfig:
    """How a case is made. Lengths in mm, densities in HU.

    ``n_tumors``/``n_tumors_weights``: the choices of tumor count and their relative
    weights (default 1, 2 or 3 with equal odds). ``morph``: keyword ranges for
    :meth:`synthlung.synthesis.morphing.MorphParams.sample`. ``blend``: keyword options for
    :func:`synthlung.synthesis.blending.blend` besides the method. ``texture``: give each
    inserted tumor the host's soft-tissue noise (std and spectrum, see
    :mod:`synthlung.synthesis.texture`).
    """

    n_tumors: tuple[int, ...] = (1, 2, 3)
    n_tumors_weights: tuple[float, ...] | None = None
    seed_draws_per_tumor: int = 4
    method: str = "alpha"
    blend: dict = field(default_factory=dict)
    morph: dict = field(default_factory=dict)
    placement: PlacementRules = field(default_factory=PlacementRules)
    sizes: SizePolicy | None = field(default_factory=SizePolicy)
    burden: Burden = field(default_factory=Burden)
    texture: bool = True
    hu_range: tuple[float, float] = (-1024.0, 3071.0)

    def __post_init__(self) -> None:
        if self.method not in BLEND_METHODS:
            raise InputError(f"blending method {self.method!r}: expected one of {', '.join(BLEND_METHODS)}")
        if not self.n_tumors or min(self.n_tumors) < 0:
            raise InputError(f"n_tumors {self.n_tumors!r}: expected a non-empty list of counts >= 0")
        if self.n_tumors_weights is not None and len(self.n_tumors_weights) != len(self.n_tumors):
            raise InputError("n_tumors_weights must have one weight per entry of n_tumors")

    def to_dict(self) -> dict:
        """A JSON-serialisable form (what the case record stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SynthesisConfig":
        """Build from a mapping, e.g. a parsed ``gen.yaml``; unknown keys are an error."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown synthesis option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for key, kind in (("placement", PlacementRules), ("sizes", SizePolicy), ("burden", Burden)):
            if isinstance(data.get(key), dict):
                data[key] = _options(kind, key, data[key])
        for key in ("n_tumors", "n_tumors_weights", "hu_range"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SynthesisConfig":
        """Read a YAML file of options (see :meth:`from_dict`)."""
        import yaml
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{path}: cannot read synthesis config: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping of options, got {type(data).__name__}")
        return cls.from_dict(data)


def _options(kind: type, name: str, values: dict) -> Any:
    """``kind(**values)``, with unknown keys named in a one-line error."""
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown {name} option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return kind(**values)


@dataclass
class PlannedTumor:
    """A tumor drawn for a case: which seed, how it was morphed, where it goes."""

    seed_id: str
    morphed: Any
    placement: Placement
    params: MorphParams
    size: dict = field(default_factory=dict)


@dataclass
class Case:
    """A synthetic case: image (host dtype), label (0/1), instance map (None when not asked
    for, see :func:`synthesize`), and its record (None when not asked for)."""

    image: Volume
    label: Volume
    instances: Volume | None
    record: dict | None


def _seed_on(seed: Any, xp: Any) -> Any:
    """A seed whose volumes live on ``xp`` (seeds are read from disk as NumPy)."""
    return dataclasses.replace(seed, image=seed.image.on(xp), mask=seed.mask.on(xp),
                               soft_mask=seed.soft_mask.on(xp))


SEEDS_KEPT = 64
"""Seeds kept in memory per seed bank (read once, on the device of the host that drew them)."""

_SEEDS: "weakref.WeakKeyDictionary[Any, LRUCache]" = weakref.WeakKeyDictionary()


def _drawn_seed(seed_bank: Any, index: int, xp: Any) -> Any:
    """Seed ``index`` of ``seed_bank`` on ``xp``: read from disk the first time, then kept."""
    try:
        kept = _SEEDS.setdefault(seed_bank, LRUCache(SEEDS_KEPT))
    except TypeError:  # a plain sequence of seeds: nothing to read
        return _seed_on(seed_bank[index], xp)
    return kept.get((seed_bank.ids[index], xp.__name__), lambda: _seed_on(seed_bank[index], xp))


def _centre_in_box(morphed: Any) -> tuple[int, int, int]:
    """Voxel of the morphed box nearest to where the seed centroid went."""
    ijk = morphed.image.world_to_voxel(np.asarray(morphed.centre_world, dtype=np.float64))
    return tuple(int(v) for v in np.rint(ijk))


def _equivalent_radius_mm(mask: Any, spacing_mm: tuple[float, float, float]) -> float:
    volume = float(array_module(mask).count_nonzero(mask)) * float(np.prod(spacing_mm))
    return float((3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0))


class Occupancy:
    """The tumors already in a case, read box by box: the host's own (its label array,
    or None) and those placed so far (masks at box offsets). ``occupancy[box]`` is
    a boolean array of the box (slices with explicit start and stop); no whole-volume
    map is ever made."""

    def __init__(self, tumors: Any, shape: tuple[int, int, int], xp: Any):
        self.tumors, self.shape, self.xp = tumors, tuple(shape), xp
        self.placed: list[tuple[tuple[int, int, int], Any]] = []

    def add(self, offset: tuple[int, int, int], mask: Any) -> None:
        """Record a placed tumor: boolean ``mask`` whose box starts at host voxel ``offset``."""
        self.placed.append((tuple(int(o) for o in offset), mask))

    def __getitem__(self, box: tuple[slice, slice, slice]) -> Any:
        lo = [s.start for s in box]
        hi = [s.stop for s in box]
        shape = tuple(h - l for l, h in zip(lo, hi))
        overlaps = []
        for offset, mask in self.placed:
            a = [max(l, o) for l, o in zip(lo, offset)]
            b = [min(h, o + n) for h, o, n in zip(hi, offset, mask.shape)]
            if all(x < y for x, y in zip(a, b)):
                overlaps.append((tuple(slice(x - l, y - l) for x, y, l in zip(a, b, lo)),
                                 mask[tuple(slice(x - o, y - o) for x, y, o in zip(a, b, offset))]))
        out = self.tumors[box] > 0 if self.tumors is not None else self.xp.zeros(shape, dtype=bool)
        for where, part in overlaps:
            out[where] |= part
        return out


class _Positive:
    """``array > 0`` evaluated only on the boxes asked for (``.shape`` and slicing)."""

    def __init__(self, array: Any):
        self.array, self.shape = array, tuple(array.shape)

    def __getitem__(self, box: Any) -> Any:
        return self.array[box] > 0


_SAMPLERS = LRUCache(16)


def centre_sampler(host: Any, surface: bool = False) -> CentreSampler:
    """The host's :class:`CentreSampler` of zone voxels (``surface``: those on the lung surface,
    :func:`~synthlung.synthesis.placement.pleural_sites`), made once per zone array and dropped with it."""
    zone = host.zone.array
    key = (id(zone), surface)

    def make() -> tuple[Any, CentreSampler]:
        try:
            ref = weakref.ref(zone, lambda _: _SAMPLERS.discard(key))
        except TypeError:  # an array type without weak references: not kept
            ref = None
        if surface:
            return ref, pleural_sites(zone, host.distance_mm.array, host.image.spacing)
        return ref, CentreSampler(zone, host.distance_mm.array)

    ref, sampler = _SAMPLERS.get(key, make)
    if ref is None or ref() is not zone or sampler.distance_mm is not host.distance_mm.array:
        _SAMPLERS.discard(key)
        ref, sampler = _SAMPLERS.get(key, make)
    return sampler


def memory_order(array: Any) -> str:
    """``"F"`` for a Fortran-ordered array (as nibabel loads), else ``"C"``."""
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


LAZY_ZERO_BYTES = 1 << 20
"""NumPy maps from this size up are fresh anonymous memory (zero pages the kernel fills on first touch)."""


def zero_map(xp: Any, shape: tuple[int, ...], dtype: Any, order: str) -> Any:
    """A zero array for a label or instance map. On NumPy from :data:`LAZY_ZERO_BYTES` up it is
    backed by a fresh private anonymous ``mmap``: only the pages a tumour's box writes get memory,
    where ``np.zeros`` on reused heap memory clears the whole volume (about 2 ms for the chest CT's
    two maps here). Where the OS has them (Linux), the mapping asks for transparent huge pages:
    a later read of the map (a crop, a batch's collation, writing the case) then maps one shared
    zero page per 2 MB instead of faulting per 4 kB (a 512 x 512 x 208 uint8 label read whole
    here: 2 ms against 15 ms, and 48 ms as the shared memory it was before, which also let a
    process forked after the map was made write into it). An ordinary writable array in every
    other respect (pickles, ``torch.from_numpy``, copy-on-write across ``fork``)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if xp is not np or nbytes < LAZY_ZERO_BYTES:
        return xp.zeros(shape, dtype=dtype, order=order)
    import mmap
    if hasattr(mmap, "MAP_PRIVATE"):  # POSIX
        memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            memory.madvise(mmap.MADV_HUGEPAGE)
    else:  # Windows: anonymous memory is private already
        memory = mmap.mmap(-1, nbytes)
    return np.ndarray(shape, dtype=dtype, buffer=memory, order=order)


def draw_tumor_count(rng: np.random.Generator, config: SynthesisConfig) -> int:
    """How many tumors this case asks for."""
    weights = None
    if config.n_tumors_weights is not None:
        w = np.asarray(config.n_tumors_weights, dtype=np.float64)
        weights = w / w.sum()
    return int(rng.choice(np.asarray(config.n_tumors), p=weights))


def sample_placements(host: Any, seed_bank: Any, rng: np.random.Generator,
                      config: SynthesisConfig, record: bool = True) -> tuple[list[PlannedTumor], int]:
    """Draw the tumors of one case: count, size, seed, morph parameters and an accepted place each.

    Per tumor: a target diameter (``config.sizes``, within what the burden leaves),
    a seed that reaches it within the scale limits, its morph, and a place:
    against the pleura for seeds that touched it in their own scan, in parenchyma
    otherwise (:mod:`synthlung.synthesis.placement`). Returns the accepted tumors
    and the count asked for; a tumor for which nothing fits after
    ``seed_draws_per_tumor`` seeds is left out (the record says so). ``record=False``: the
    morphed seeds carry no record (the same draws and arrays).
    """
    if len(seed_bank) == 0:
        raise InputError("the seed bank is empty: no tumor to insert")
    xp = host.image.xp
    spacing = host.image.spacing
    voxel_ml = float(np.prod(spacing)) / 1000.0
    lungs = _Positive(host.lungs.array)
    occupied = Occupancy(None if host.tumors is None else host.tumors.array, host.image.shape, xp)
    planner = _Planner(host, lungs, occupied, config, record)
    seed_mm = np.array([float(r.get("equivalent_diameter_mm") or 0.0) for r in seed_bank.records])
    tally = BurdenTally(config.burden)
    wanted = draw_tumor_count(rng, config)
    planned: list[PlannedTumor] = []
    for _ in range(wanted):
        target = None
        if config.sizes is not None:
            target = config.sizes.draw(rng, tally.room_mm(),
                                       np.inf if tally.mass_allowed() else config.burden.mass_mm)
            if target is None:
                break  # the burden leaves room for no size class
        for _ in range(config.seed_draws_per_tumor):
            index = _draw_seed(rng, seed_mm, target, config.sizes)
            seed = _drawn_seed(seed_bank, index, xp)
            params = MorphParams.sample(rng, slice_axis=thick_slice_axis(seed, spacing), **config.morph)
            size = {"seed_diameter_mm": round(float(seed_mm[index]), 3)}
            if target is not None:
                factor = config.sizes.factor(seed_mm[index], target / float(np.prod(params.scale)) ** (1 / 3))
                params = params.scaled(factor)
                size.update(target_diameter_mm=round(target, 3), size_factor=round(factor, 6))
            found = planner.place(seed, params, rng)
            if found is None:
                continue
            morphed, placement, params = found
            mask = morphed.mask.array.astype(bool)
            volume_ml = float(xp.count_nonzero(mask)) * voxel_ml
            diameter = sphere_diameter_mm(volume_ml)
            lung = int(host.lungs.array[placement.centre_voxel])
            if not tally.fits(volume_ml, diameter, lung):
                continue
            tally.add(volume_ml, diameter, lung)
            occupied.add(placement.offset, mask)
            size.update(diameter_mm=round(diameter, 3), volume_ml=round(volume_ml, 4), lung=lung)
            planned.append(PlannedTumor(seed_bank.ids[index], morphed, placement, params, size))
            break
    return planned, wanted


def _draw_seed(rng: np.random.Generator, seed_mm: np.ndarray, target: float | None,
               sizes: SizePolicy | None) -> int:
    """A seed index: uniform over the seeds that reach ``target`` within the scale limits (all when none do)."""
    if target is None:
        return int(rng.integers(len(seed_mm)))
    ok = np.flatnonzero(sizes.reachable(seed_mm, target))
    pool = ok if ok.size else np.arange(len(seed_mm))
    return int(pool[int(rng.integers(pool.size))])


def _cut_to(morphed: Any, keep: Any) -> Any:
    """The morphed seed with its soft mask (and mask) zeroed outside ``keep`` (box voxels)."""
    soft = morphed.soft_mask.array * keep
    record = morphed.record
    if record is not None:
        record = dict(record, cut_to_lung_voxels=int((morphed.mask.array.astype(bool) & ~keep).sum()))
    return dataclasses.replace(morphed, soft_mask=morphed.soft_mask.with_array(soft),
                               mask=morphed.mask.with_array((soft >= 0.5).astype(morphed.mask.array.dtype)),
                               record=record)


class _Planner:
    """Morphs a drawn seed and finds it a place in one host: against the pleura or in parenchyma."""

    def __init__(self, host: Any, lungs: Any, occupied: Any, config: SynthesisConfig, record: bool):
        self.host, self.lungs, self.occupied, self.config, self.record = host, lungs, occupied, config, record
        self.rules = config.placement
        self.spacing = host.image.spacing
        self.sampler = centre_sampler(host)
        # warp only the part of each box where blending reads the seed
        self.support_pad = seed_pad(config.method, self.spacing, config.blend)

    @property
    def sites(self) -> CentreSampler:
        """Zone voxels on the lung surface (made on first use per host, then kept)."""
        return centre_sampler(self.host, surface=True)

    def _facing_site(self, seed_normal: np.ndarray, rng: np.random.Generator,
                     draws: int = 64) -> tuple[tuple[int, int, int] | None, np.ndarray | None]:
        """A pleural site whose outward normal is within ``contact_alignment`` (cosine) of the seed's."""
        for _ in range(draws):
            site = self.sites.draw(rng)
            normal = outward_normal(self.host.distance_mm.array, site, self.host.image.affine)
            if normal is not None and float(normal @ seed_normal) >= self.rules.contact_alignment:
                return site, normal
        return None, None

    def _morph(self, seed: Any, params: MorphParams) -> Any | None:
        morphed = morph(seed, params, target=self.host.image.affine, support_pad=self.support_pad,
                        record=self.record)
        return morphed if bool(morphed.mask.array.any()) else None

    def place(self, seed: Any, params: MorphParams,
              rng: np.random.Generator) -> tuple[Any, Placement, MorphParams] | None:
        """(morphed seed, placement, the parameters used), or None when this seed finds no place.

        A seed placed against the pleura gets its rotation from the site, so the
        parameters used differ from ``params`` there."""
        contact = seed.record.get("contact") or {}
        if contact.get("normal") is not None and contact["fraction"] >= self.rules.contact_min_fraction:
            return self._against_pleura(seed, params, np.asarray(contact["normal"], dtype=np.float64),
                                        float(contact["fraction"]), rng)
        morphed = self._morph(seed, params)
        if morphed is None:
            return None
        mask = morphed.mask.array.astype(bool)
        radius = _equivalent_radius_mm(mask, self.spacing)
        found = sample_placement(mask, _centre_in_box(morphed), radius, self.sampler, self.lungs, self.occupied,
                                 self.spacing, self.rules, rng)
        return None if found is None else (morphed, found, params)

    def _against_pleura(self, seed: Any, params: MorphParams, seed_normal: np.ndarray, seed_fraction: float,
                        rng: np.random.Generator) -> tuple[Any, Placement, MorphParams] | None:
        """Sites on the host's pleura facing the way the seed's contact did; the seed turned to face each."""
        if self.sites.size == 0:
            return None
        affine = self.host.image.affine
        signs = np.where(params.flip, -1.0, 1.0) * np.asarray(params.scale)
        face = seed_normal / signs  # the contact normal after scale and flip, before the rotation
        face /= np.linalg.norm(face)
        need = max(self.rules.contact_min_fraction, self.rules.contact_keep * seed_fraction)
        for attempt in range(1, self.rules.contact_sites + 1):
            site, normal = self._facing_site(seed_normal, rng)
            if site is None:
                return None
            twist = float(rng.uniform(0.0, 2.0 * np.pi))
            turned = dataclasses.replace(params, rotation=rotation_aligning(face, normal, twist),
                                         rotation_policy="contact face to the pleura, uniform twist")
            morphed = self._morph(seed, turned)
            if morphed is None:
                return None
            mask = morphed.mask.array.astype(bool)
            found = place_against_pleura(mask, _centre_in_box(morphed), site, normal, affine, self.lungs,
                                         self.occupied, self.host.image.array, self.spacing, self.rules, attempt)
            if found is None:
                continue
            placement, keep = found
            morphed = _cut_to(morphed, keep)
            mask = morphed.mask.array.astype(bool)
            placed = measure_contact(mask, self.host.lungs.array[box_slices(placement.offset, mask.shape)], affine)
            if placed.normal is not None and placed.fraction >= need and float(np.dot(placed.normal, normal)) >= 0.5:
                return morphed, dataclasses.replace(placement, contact=placed.to_record()), turned
        return None


def _tumor_entry(k: int, tumor: PlannedTumor, done: Any, host: Any, config: SynthesisConfig) -> dict:
    """Tumour ``k``'s part of the case record: seed, morph, place, size and blend."""
    centre = host.image.voxel_to_world(np.asarray(tumor.placement.centre_voxel))
    return {
        "instance": k,
        "seed_id": tumor.seed_id,
        "morph": tumor.morphed.record,
        "offset_voxels": list(tumor.placement.offset),
        "centre_voxel": list(tumor.placement.centre_voxel),
        "centre_world_mm": [round(float(c), 4) for c in centre],
        "box_shape": list(tumor.morphed.image.shape),
        "inside_lung_fraction": round(tumor.placement.inside_fraction, 4),
        "juxtapleural": tumor.placement.juxtapleural,
        "pleural_normal": None if tumor.placement.pleural_normal is None
        else [round(v, 4) for v in tumor.placement.pleural_normal],
        "pleural_contact": tumor.placement.contact,
        "size": tumor.size,
        "tries": tumor.placement.tries,
        "tumor_voxels": int(host.image.xp.count_nonzero(tumor.morphed.mask.array)),
        "blend": {"method": config.method, "region_voxels": done.region_voxels, **done.info},
    }


def synthesize(host: Any, seed_bank: Any, rng: np.random.Generator,
               config: SynthesisConfig | None = None, key: Any = None, inplace: bool = False,
               instance_dtype: Any = np.uint16, label_map: Any = None, record: bool = True) -> Case:
    """Make one synthetic case from ``host`` and tumors drawn from ``seed_bank`` with ``rng``.

    ``host`` is a :class:`synthlung.hosts.Host` (arrays on NumPy or CuPy),
    ``seed_bank`` a :class:`synthlung.seeds.SeedBank` (or any sequence of seeds
    with ``.ids``). ``key`` is the case's random key, stored in the record.
    ``inplace``: write the tumors into ``host.image.array`` itself (only their
    blending boxes change) instead of a copy, for a caller whose host image is
    its own copy already (a data loader's sample). ``instance_dtype``: of the
    instance map (uint16; the torch transforms ask for int32); None makes no map
    (``Case.instances`` is None; the record still numbers the tumours), for a caller
    that does not use it: the map is a whole-volume array whose boxes' memory pages
    each cost a fault on first write. ``label_map``: a
    label array of the host's grid (any dtype, the host's own tumors already in it)
    that the inserted tumors are written into, instead of a new uint8 map made from
    ``host.tumors`` (a whole-volume pass): for a caller that has its label already.
    ``record``: False makes no record (``Case.record`` None; the same draws and arrays), for a
    caller that throws it away: the config and each tumour's parameters as plain dicts and
    lists cost about 0.15 ms a call here.
    """
    config = config or SynthesisConfig()
    xp = host.image.xp
    # one copy at most, in the host's memory order
    image = host.image.array if inplace else xp.array(host.image.array, copy=True, order="K")
    order = memory_order(image)
    if label_map is not None:
        if tuple(label_map.shape) != tuple(image.shape):
            raise InputError(f"label_map shape {tuple(label_map.shape)} differs from the host's {tuple(image.shape)}")
        label = label_map
    elif host.tumors is not None:
        label = (host.tumors.array > 0).astype(np.uint8, order=order)  # True is TUMOR_CLASS (1)
    else:
        label = zero_map(xp, image.shape, np.uint8, order)
    instances = None if instance_dtype is None else zero_map(xp, image.shape, instance_dtype, order)
    planned, wanted = sample_placements(host, seed_bank, rng, config, record)
    texture = host_noise(host) if config.texture else None
    tumors = []
    for k, tumor in enumerate(planned, start=1):
        done = insert(image, label, instances, tumor.morphed, tumor.placement.offset, k, host.image.spacing,
                      method=config.method, hu_range=config.hu_range, rng=rng, texture=texture,
                      **config.blend)
        if record:
            tumors.append(_tumor_entry(k, tumor, done, host, config))
    affine = host.image.affine
    case = Case(Volume(image, affine), Volume(label, affine),
                None if instances is None else Volume(instances, affine), None)
    if not record:
        return case
    case.record = {
        "synthlung_version": __version__,
        "random_key": key,
        "host": {"id": host.record.get("id"), "sha256": host.record.get("sha256")},
        "host_noise_hu": None if texture is None else texture.std_hu,
        "tumors_requested": wanted,
        "tumors_inserted": len(tumors),
        "tumors": tumors,
        "config": config.to_dict(),
        "label_classes": {"0": "background", str(TUMOR_CLASS): "tumor"},
    }
    if len(tumors) < wanted:
        case.record["note"] = f"{wanted - len(tumors)} of {wanted} tumors found no place that fits the rules"
    return case
