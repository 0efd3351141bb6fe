"""What ``RandInsertTumorsd`` adds per sample to a MONAI ``CacheDataset`` pipeline, samples alternated.

``bench_calls.py`` times each pipeline in a block of rounds, one after another; on
this project's shared 2-core VM the machine drifts between blocks by tens of
percent, more than the difference measured. Here the same pipelines (``bench_calls``'s
``_compose``: ``lean``, ``lean, host bank``, ``segmentation``, ``segmentation, indices``,
and the last two on lung1, ``lung1 segmentation`` and ``lung1 segmentation, indices``;
insertion with ``copy=False``) take turns sample by sample, so drift hits both alike.
Printed per pipeline: 10th percentile and median per sample (ms) without and with
insertion, and what insertion adds (%).

    python -m benchmarks.alternate_pipelines [samples] [threads] [collate]

``samples`` per pipeline and variant (default 200); ``threads``: Numba threads (0 or
omitted: Numba's own, 2 here; 1 is how the transform runs in DataLoader workers);
``collate``: each sample's image and label (where it has one) are also collated into a
batch of one (MONAI's ``list_data_collate``, what a ``DataLoader`` does with them), inside
the time: the crop's outputs are views of the cached volumes until then, so reading them
(the label's untouched zero pages included) is counted only this way. (The lean items'
uncropped lungs are left out of the batch, as a training loop would.)
Data from ``$SYNTHLUNG_TEST_DATA`` or ``../shared/data``; allocator pinned as in
``bench_calls``.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_calls import _compose, lung1_item
from benchmarks.conftest import DATA_DIR
from synthlung.io import load, save
from synthlung.seeds import SeedBank, extract_seeds

KINDS = ("lean", "lean, host bank", "segmentation", "segmentation, indices", "lung1 segmentation",
         "lung1 segmentation, indices")


def _items(root: Path) -> tuple[SeedBank, Path, dict]:
    """lung1's seed bank; a host bank of the chest CT; the CT with its lungs (and an
    all-background label) as files, and lung1 with its label and lungs: the items of each
    kind of pipeline."""
    from synthlung.datasets import ingest
    from synthlung.hosts import build_host_bank, make_host
    ct_path = DATA_DIR / "totalseg-chest" / "chest_ct.nii.gz"
    host = make_host(load(ct_path), host_id="chest")
    save(host.lungs, root / "lungs.nii.gz")
    save(host.image.with_array(np.zeros(host.image.shape, np.uint8, order="F")), root / "label.nii.gz")
    (root / "ct").mkdir()
    (root / "ct" / ct_path.name).symlink_to(ct_path)
    ingest(root / "ct", root / "catalog")
    build_host_bank(root / "catalog" / "catalog.json", root / "hosts")
    lung1 = DATA_DIR / "pyradiomics-lung1"
    seeds = extract_seeds(load(lung1 / "lung1_image.nrrd"), load(lung1 / "lung1_label.nrrd"), case_id="lung1")
    item = {"image": str(ct_path), "lungs": str(root / "lungs.nii.gz")}
    items = {"lean": item, "lean, host bank": {"image": str(ct_path)}}
    items.update({kind: {**item, "label": str(root / "label.nii.gz")}
                  for kind in ("segmentation", "segmentation, indices")})
    items["lung1 segmentation"] = items["lung1 segmentation, indices"] = lung1_item(DATA_DIR, root)
    return SeedBank.write(seeds, root / "seeds"), root / "hosts", items


def main(samples: int = 200, threads: int | None = None, collate: bool = False) -> None:
    from monai.data import CacheDataset
    from monai.data.utils import list_data_collate
    if threads:
        import numba
        numba.set_num_threads(threads)

    def sample(ds: CacheDataset) -> None:
        if collate:
            out = ds[0]
            list_data_collate([{k: out[k] for k in ("image", "label") if k in out}])
        else:
            ds[0]

    with tempfile.TemporaryDirectory() as tmp:
        bank, host_bank, items = _items(Path(tmp))
        print("| pipeline | without: p10; median (ms) | with insertion | adds: p10; median |")
        print("| --- | ---: | ---: | ---: |")
        for kind in KINDS:
            banked = host_bank if kind == "lean, host bank" else None
            sets = [CacheDataset([items[kind]], _compose(bank, insert, kind, banked),
                                 progress=False) for insert in ("without", "in place")]
            for ds in sets:
                for _ in range(3):  # JIT, prepared host
                    sample(ds)
            times = [[], []]
            for _ in range(samples):
                for ds, spent in zip(sets, times):
                    start = time.perf_counter()
                    sample(ds)
                    spent.append(time.perf_counter() - start)
            (p10a, meda), (p10b, medb) = (np.percentile(np.array(t) * 1e3, [10, 50]) for t in times)
            print(f"| {kind} | {p10a:.2f}; {meda:.2f} | {p10b:.2f}; {medb:.2f} "
                  f"| {100 * (p10b / p10a - 1):+.0f} %; {100 * (medb / meda - 1):+.0f} % |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, int(sys.argv[2]) if len(sys.argv) > 2 else None,
         len(sys.argv) > 3 and sys.argv[3] == "collate")
