"""Generate N synthetic cases to disk: deterministic, resumable, local pool or Dask.

Case ``i`` of a run with seed ``s`` draws everything (host, tumor count, seeds,
morphing, centres, noise) from :func:`synthlung.rng.case_rng(s, i)`, so it is the
same file whichever worker makes it and in whichever order. Each file is written
under a temporary name and renamed; a case's line is appended to
``manifest.jsonl`` only after all its files are complete, so ``resume`` makes
exactly the cases that are missing from the manifest.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..backend import cupy_gpu_available, optional_import
from ..datasets.catalog import sha256_of
from ..datasets.output_layouts import LAYOUTS
from ..errors import InputError
from ..io.atomic import append_line, atomic_path, remove_stale_temporaries, write_json
from ..io.folder_lock import folder_lock
from ..rng import case_key, case_rng
from ..synthesis.case import SynthesisConfig, synthesize

MANIFEST = "manifest.jsonl"
PARENT_POLL_S = 0.5
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MAX_SEED = 2**64 - 1


@dataclass(frozen=True)
class GenerateJob:
    """Everything a worker needs to make case ``index``: paths and plain values only."""

    hosts: str
    seeds: str
    out: str
    seed: int
    layout: str
    config: dict
    device: str = "cpu"


DEVICES = ("cpu", "cuda")
_BANKS: dict[tuple[str, str], tuple[Any, Any]] = {}


def _banks(hosts: str, seeds: str) -> tuple[Any, Any]:
    """The host and seed banks at these paths, opened once per process and reused."""
    key = (hosts, seeds)
    if key not in _BANKS:
        from ..hosts import HostBank
        from ..seeds import SeedBank
        _BANKS[key] = (HostBank.open(hosts), SeedBank.open(seeds))
    return _BANKS[key]


_HOSTS: dict[tuple[str, int], Any] = {}
HOST_CACHE_SIZE = 2


def _host(job: GenerateJob, hosts: Any, index: int) -> Any:
    """Host ``index`` of the bank, kept for the next cases of this process (loading and
    the placement zone's distance transform cost more than a whole case)."""
    key = (job.hosts, index, job.device)
    if key not in _HOSTS:
        while len(_HOSTS) >= HOST_CACHE_SIZE:
            _HOSTS.pop(next(iter(_HOSTS)))
        host = hosts[index]
        _HOSTS[key] = host if job.device == "cpu" else host_on_gpu(host)
    return _HOSTS[key]


def host_on_gpu(host: Any) -> Any:
    """The host with every array copied to the GPU once (CuPy), so that whole cases run there."""
    cupy = optional_import("cupy", "cuda12", "device='cuda'")
    tumors = None if host.tumors is None else host.tumors.on(cupy)
    return replace(host, image=host.image.on(cupy), lungs=host.lungs.on(cupy),
                   zone=host.zone.on(cupy), distance_mm=host.distance_mm.on(cupy), tumors=tumors)


def _draw_host(rng: Any, n_hosts: int) -> int:
    """The host of a case: always the first draw of the case's generator."""
    return int(rng.integers(n_hosts))


def case_from_key(hosts: Any, seeds: Any, key: list[int], config: SynthesisConfig,
                  host_of: Callable[[int], Any] | None = None) -> Any:
    """The case of random key ``(seed, index)``: the host is the first draw of its generator."""
    rng = case_rng(*key)
    choice = _draw_host(rng, len(hosts))
    host = hosts[choice] if host_of is None else host_of(choice)
    return synthesize(host, seeds, rng, config, key=list(key))


def grouped_by_host(indices: list[int], seed: int, n_hosts: int) -> list[int]:
    """Case indices ordered by the host each one draws, so that workers reuse loaded hosts
    (loading a host and its placement zone costs more than a case); the files do not
    depend on the order."""
    return sorted(indices, key=lambda i: (_draw_host(case_rng(seed, i), n_hosts), i))


def remake(record: dict, hosts: Any, seeds: Any) -> Any:
    """Make a generated case again from its record and the same host and seed banks."""
    case = case_from_key(hosts, seeds, record["random_key"], SynthesisConfig.from_dict(record["config"]))
    if case.record["host"] != record["host"]:
        raise InputError(f"case {record.get('case')}: the host bank differs from the one it was made from "
                         f"(host {case.record['host']['id']} drawn, {record['host']['id']} recorded)")
    return case


def make_case(job: GenerateJob, index: int) -> dict:
    """Make and write case ``index``; return its manifest entry. Safe to run in any process."""
    from ..io import save

    hosts, seeds = _banks(job.hosts, job.seeds)
    case = case_from_key(hosts, seeds, case_key(job.seed, index), SynthesisConfig.from_dict(job.config),
                         host_of=lambda i: _host(job, hosts, i))
    layout = LAYOUTS[job.layout]
    paths = layout.case_paths(Path(job.out), index)
    case.record["case"] = layout.case_name(index)
    case.record["files"] = {k: str(p.relative_to(job.out)) for k, p in paths.items()}
    save(case.image, paths["image"])
    save(case.label, paths["label"])
    save(case.instances, paths["instances"])
    write_json(paths["record"], case.record)
    return {"index": index, "case": layout.case_name(index), **case.record["files"],
            "tumors_inserted": case.record["tumors_inserted"], "host": case.record["host"]["id"]}


def _manifest_entries(path: Path) -> tuple[dict[int, dict], bool]:
    """(finished cases by index, whether every line was whole) of a manifest file."""
    done: dict[int, dict] = {}
    if not path.exists():
        return done, True
    text = path.read_text(encoding="utf-8", errors="replace")
    whole = text == "" or text.endswith("\n")
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            done[int(entry["index"])] = entry
        except (ValueError, KeyError, TypeError):
            whole = False
    return done, whole


def read_manifest(out: str | Path) -> dict[int, dict]:
    """The finished cases of a run folder, by index (a torn line is ignored)."""
    return _manifest_entries(Path(out) / MANIFEST)[0]


def repair_manifest(out: str | Path) -> dict[int, dict]:
    """Rewrite ``out``'s manifest (atomically) without the torn line a killed run left, so that
    the next appended line starts on a line of its own; returns the finished cases."""
    path = Path(out) / MANIFEST
    done, whole = _manifest_entries(path)
    if not whole:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(done[i], sort_keys=True) + "\n" for i in sorted(done)),
                           encoding="utf-8")
    return done


def _end_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when its parent dies, so that a killed run leaves no
    worker behind (one that could still rename a file into a folder the next run has locked).

    On Linux the kernel kills it at once (``PR_SET_PDEATHSIG``; the pool's workers are
    started by the thread that runs :func:`generate`); everywhere, a daemon thread also
    ends it (``os._exit``) within ``PARENT_POLL_S`` once it has been re-parented
    (``getppid`` changes), which also covers a parent that died before the first.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)
    threading.Thread(target=watch, name="synthlung-parent-watch", daemon=True).start()


def _run_local(job: GenerateJob, todo: list[int], workers: int) -> Iterator[dict]:
    if workers <= 1:
        for i in todo:
            yield make_case(job, i)
        return
    import multiprocessing as mp
    # spawn, not fork: Numba's threading layers are not fork-safe.
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_end_with_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(make_case, job, i) for i in todo]
        for fut in as_completed(futures):
            yield fut.result()


def _run_dask(job: GenerateJob, todo: list[int], address: str | None, workers: int) -> Iterator[dict]:
    distributed = optional_import("distributed", "dask", "--scheduler dask")
    if address:
        client = distributed.Client(address)
    else:
        cluster = distributed.LocalCluster(n_workers=max(workers, 1), threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        futures = client.map(make_case, [job] * len(todo), todo, pure=False)
        for fut in distributed.as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if not address:
            cluster.close()


def generate(hosts: str | Path, seeds: str | Path, n: int, out: str | Path, seed: int = 0,
             workers: int = 1, config: SynthesisConfig | None = None, layout: str = "nnunet",
             resume: bool = False, scheduler: str = "local", address: str | None = None,
             device: str = "cpu", progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Generate cases ``0..n-1`` into ``out``; returns the manifest entries of all finished cases.

    ``scheduler`` is ``"local"`` (a process pool of ``workers``; 1 runs in this
    process) or ``"dask"`` (a ``distributed`` cluster at ``address``, or a local
    one). ``device="cuda"`` makes each case on the GPU (CuPy; extra ``cuda12``),
    each host copied there once per worker; GPU and CPU cases are not bit-identical
    (the float kernels agree to a tolerance, and noise is drawn on the device).
    Both banks are verified first (every file against the sha256 its index
    recorded) and ``run.json`` records the hash of each bank's index, so that a
    ``resume`` with a bank changed since the first run is refused.
    Without ``resume`` an ``out`` that already holds a manifest is an error;
    ``resume`` first drops a torn manifest line. ``out`` is locked for the run
    (a second writer gets :class:`~synthlung.errors.BusyError`), temporaries a
    killed run left are removed, and pool workers end when this process dies.
    """
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if scheduler not in ("local", "dask"):
        raise InputError(f"scheduler {scheduler!r}: expected local or dask")
    _check_integer("n", n, 0, None, "the number of cases")
    _check_integer("seed", seed, 0, MAX_SEED, "the run seed (one half of each case's Philox key)")
    _check_integer("workers", workers, 1, None, "the number of worker processes")
    if device not in DEVICES:
        raise InputError(f"device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "cuda" and not cupy_gpu_available():
        optional_import("cupy", "cuda12", "device='cuda'")
        raise InputError("device='cuda': CuPy is installed but finds no usable CUDA GPU")
    hosts, seeds = str(Path(hosts).resolve()), str(Path(seeds).resolve())
    _BANKS.clear()   # this process may hold banks (and hosts) of an earlier run that have changed since
    _HOSTS.clear()
    host_bank, seed_bank = _banks(hosts, seeds)  # bad bank paths fail here, before anything is written
    if len(host_bank) == 0 or len(seed_bank) == 0:
        raise InputError(f"nothing to generate from: {len(host_bank)} hosts in {hosts}, {len(seed_bank)} seeds in {seeds}")
    host_bank.verify()
    seed_bank.verify()
    out = Path(out)
    config = config or SynthesisConfig()
    with folder_lock(out, "generate"):
        done = repair_manifest(out) if resume else read_manifest(out)
        if done and not resume:
            raise InputError(f"{out} already holds {len(done)} generated cases; pass --resume to continue it "
                             "or choose an empty folder")
        remove_stale_temporaries(out, *(p for p in out.iterdir() if p.is_dir()))
        job = GenerateJob(hosts, seeds, str(out.resolve()), int(seed), layout, config.to_dict(), device)
        run_info = {"n": n, "seed": seed, "layout": layout, "config": config.to_dict(),
                    "hosts": job.hosts, "seeds": job.seeds, "device": device,
                    "hosts_index_sha256": sha256_of(Path(hosts) / "index.json"),
                    "seeds_index_sha256": sha256_of(Path(seeds) / "index.json")}
        _check_same_run(out, run_info, resume)
        todo = grouped_by_host([i for i in range(n) if i not in done], job.seed, len(host_bank))
        runner = (_run_dask(job, todo, address, workers) if scheduler == "dask"
                  else _run_local(job, todo, workers))
        for entry in runner:
            append_line(out / MANIFEST, json.dumps(entry, sort_keys=True))
            done[entry["index"]] = entry
            if progress is not None:
                progress(entry)
        entries = [done[i] for i in sorted(done)]
        LAYOUTS[layout].write_dataset_json(out, entries)
        return entries


def _check_integer(name: str, value: Any, lo: int, hi: int | None, what: str) -> None:
    """InputError unless ``value`` is an integer (not a bool or float) in ``lo..hi``."""
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or value < lo or (hi is not None and value > hi)):
        upto = f" to {hi}" if hi is not None else " or more"
        raise InputError(f"{name}={value!r}: {what} must be an integer from {lo}{upto}")


def _check_same_run(out: Path, run_info: dict, resume: bool) -> None:
    """Record the run's settings; a resume with other settings would mix two datasets."""
    path = out / "run.json"
    run_info = json.loads(json.dumps(run_info))  # compare in JSON form (tuples become lists)
    if path.exists() and resume:
        before = json.loads(path.read_text())
        changed = sorted(k for k in run_info if k != "n" and before.get(k) != run_info[k])
        if changed:
            raise InputError(f"{out}: --resume with settings that differ from the first run: {', '.join(changed)}"
                             + (" (a bank changed since then)" if any(k.endswith("_index_sha256") for k in changed)
                                else ""))
    write_json(path, run_info)
