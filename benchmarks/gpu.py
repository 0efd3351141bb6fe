"""The GPU campaign: every ``gpu``-marked test and GPU benchmark, one table, the full figures as JSON.

On a machine with one NVIDIA GPU, from a clean checkout (the root of the repository)::

    bash ../shared/gpu/fetch-wheels.sh      # beforehand, where there is internet: wheels into .whl/
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD python3 -m benchmarks.gpu [--out FILE.json] [--budget 480]

The image must already hold CuPy and numba-cuda (the ``cuda13`` extra), torch
and pytest-benchmark. The campaign runs ``pytest tests -m gpu``, then
``pytest benchmarks -m gpu`` (synthlung's kernels beside ``cupyx.scipy.ndimage``
``label`` and ``map_coordinates``, cuCIM where installed, MONAI's
``Rand3DElasticd`` on a CUDA tensor), then a whole ``synthesize()`` case on the
GPU (3 tumours; the real chest CT and a 512 x 512 x 300 resample of it as
hosts) and the on-the-fly transform on 96^3 CUDA patches, each part within its
share of ``--budget`` seconds. The table gives per kernel and size the median
time, Gvox/s, and the fraction of the device's own measured copy bandwidth that
the call's minimum traffic (inputs read once, outputs written once) reaches,
and the issue's targets. Without a usable GPU it says so in one line and exits
with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_GPU_STATUS = 2
# issue 12's GPU targets: (what, check on the rows, text)
TARGETS = {
    "ccl": "label >= 10 Gvox/s and >= 3x cupyx",
    "warp": "512x512x300 warp >= 50 % of copy bandwidth",
    "poisson": "128^3 Poisson solve <= 5 ms",
    "case": "whole case (3 tumours, 512x512x300 host) <= 30 ms without file I/O",
}


def probe() -> str | None:
    """None when CuPy sees a CUDA GPU, else the reason in a few words."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        return f"CuPy cannot be imported ({type(exc).__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy finds no CUDA driver or device ({type(exc).__name__})"
    return None if n > 0 else "CuPy finds no CUDA device"


def _site(tmp: Path) -> str:
    """A PYTHONPATH under which ``synthlung.kernels`` imports from a plain checkout (no install, no link in it)."""
    try:
        import synthlung.kernels
        if Path(synthlung.kernels.__file__).resolve().parent == ROOT / "kernels":
            return os.environ.get("PYTHONPATH", "")  # installed from here, or the developer's link exists
    except ImportError:
        pass
    # link this checkout's package, and its kernels as synthlung.kernels, into a fresh site folder
    pkg = tmp / "site" / "synthlung"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "synthlung").iterdir():
        if entry.name != "kernels":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "kernels").symlink_to(ROOT / "kernels")
    return os.pathsep.join([str(tmp / "site"), str(ROOT), os.environ.get("PYTHONPATH", "")])


def device_info() -> dict:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"name": name, "memory_GiB": round(props["totalGlobalMem"] / 2 ** 30, 1),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "driver": cupy.cuda.runtime.driverGetVersion(), "runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cupy": cupy.__version__, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def _wall_time(fn, rounds: int = 5) -> list[float]:
    """Seconds per call of ``fn`` by the wall clock, the device synchronised (one warm-up call first)."""
    import cupy
    fn()
    times = []
    for _ in range(rounds):
        cupy.cuda.Device().synchronize()
        t = time.perf_counter()
        fn()
        cupy.cuda.Device().synchronize()
        times.append(time.perf_counter() - t)
    return times


def _gpu_time(fn, rounds: int = 10) -> list[float]:
    """Seconds per call of ``fn`` (CUDA events; one warm-up call first)."""
    import cupy
    fn()
    times = []
    for _ in range(rounds):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return times


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write of a 1 GiB buffer)."""
    import cupy
    a = cupy.ones(2 ** 28, dtype=cupy.float32)
    b = cupy.empty_like(a)
    t = min(_gpu_time(lambda: cupy.copyto(b, a)))
    return 2 * a.nbytes / t


def _python() -> list[str]:
    """This interpreter, without the working directory first on sys.path (``-P``, Python >= 3.11), so
    that the PYTHONPATH of :func:`_site` decides where ``synthlung`` comes from."""
    return [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]


def _pytest(args: list[str], env: dict, timeout: float, tmp: Path, tag: str) -> dict:
    """Run pytest in a subprocess; returns outcome counts (from its JUnit XML) and the tail of its output."""
    import xml.etree.ElementTree as ET
    junit = tmp / f"{tag}.xml"
    cmd = [*_python(), "-m", "pytest", *args, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        status, tail = done.returncode, (done.stdout + done.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        status, tail = "timeout", str(exc.stdout or "")[-3000:]
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if junit.exists():
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in counts}
    return {"status": status, **counts, "output_tail": tail}


def benchmark_rows(path: Path, bandwidth: float) -> list[dict]:
    """Table rows from a pytest-benchmark JSON (``voxels`` and ``bytes`` in each benchmark's extra_info)."""
    if not path.exists():
        return []
    rows = []
    for b in json.loads(path.read_text())["benchmarks"]:
        extra = b.get("extra_info", {})
        rows.append(_row(b.get("group") or b["name"], b["name"], extra.get("size", ""), b["stats"]["median"],
                         extra.get("voxels"), extra.get("bytes"), bandwidth))
    return rows


def _row(group, name, size, seconds, voxels, nbytes, bandwidth) -> dict:
    return {"group": group, "kernel": name, "size": size, "ms": 1e3 * seconds,
            "Gvox/s": voxels / seconds / 1e9 if voxels else None,
            "copy_bw_fraction": nbytes / seconds / bandwidth if nbytes else None}


def _real_data() -> Path | None:
    d = Path(os.environ.get("SYNTHLUNG_TEST_DATA", ROOT.parent / "shared" / "data"))
    return d if (d / "totalseg-chest" / "chest_ct.nii.gz").exists() else None


def case_rows(bandwidth: float, tmp: Path) -> list[dict]:
    """A whole synthesize() case on the GPU (3 tumours) and the transform per 96^3 CUDA patch."""
    import cupy
    import numpy as np
    from scipy import ndimage

    from synthlung.hosts import make_host
    from synthlung.io import load
    from synthlung.rng import case_rng
    from synthlung.run.offline import host_on_gpu
    from synthlung.seeds import SeedBank, extract_seeds
    from synthlung.synthesis.case import SynthesisConfig, synthesize
    from synthlung.volume import Volume

    data = _real_data()
    if data is None:
        raise FileNotFoundError("real CT data not found (set SYNTHLUNG_TEST_DATA)")
    chest = load(data / "totalseg-chest" / "chest_ct.nii.gz")
    lung1 = data / "pyradiomics-lung1"
    seeds = extract_seeds(load(lung1 / "lung1_image.nrrd"), load(lung1 / "lung1_label.nrrd"), case_id="lung1")
    bank = SeedBank.write(seeds, tmp / "seeds")
    config = SynthesisConfig(n_tumors=(3,))
    zoom = np.array([512, 512, 300]) / np.array(chest.shape)
    big_affine = chest.affine.copy()
    big_affine[:3, :3] = big_affine[:3, :3] / zoom
    big = Volume(ndimage.zoom(np.asarray(chest.array), zoom, order=1).astype(chest.array.dtype), big_affine)
    rows = []
    for label, image in (("chest CT " + "x".join(map(str, chest.shape)), chest), ("512x512x300", big)):
        host = host_on_gpu(make_host(image, host_id=label))
        n = int(np.prod(image.shape))
        times = _wall_time(lambda: synthesize(host, bank, case_rng(0, 0), config), rounds=5)
        rows.append(_row("synthesize (GPU)", "synthesize, 3 tumours", label, float(np.median(times)), n,
                         None, bandwidth))
    import torch

    from synthlung.run.transforms import RandInsertTumors
    host = make_host(chest, host_id="chest")
    lungs = np.asarray(host.lungs.array)
    c = [int(v) for v in np.argwhere(lungs > 0).mean(0)]
    box = tuple(slice(max(0, ci - 48), max(0, ci - 48) + 96) for ci in c)
    patch = torch.as_tensor(np.ascontiguousarray(np.asarray(chest.array)[box]), device="cuda")
    patch_lungs = torch.as_tensor(np.ascontiguousarray(lungs[box]), device="cuda")
    transform = RandInsertTumors(bank, SynthesisConfig(n_tumors=(1, 2, 3)))
    transform.set_random_state(0)
    times = _wall_time(lambda: transform(patch, patch_lungs, affine=chest.affine), rounds=10)
    rows.append(_row("transform (GPU)", "RandInsertTumors, 1-3 tumours", "x".join(map(str, patch.shape)),
                     float(np.median(times)), patch.numel(), None, bandwidth))
    cupy.get_default_memory_pool().free_all_blocks()
    return rows


def _cases_in_subprocess(env: dict, bandwidth: float, tmp: Path, timeout: float) -> list[dict]:
    """:func:`case_rows` in a fresh interpreter (the PYTHONPATH of :func:`_site`); an error becomes a row."""
    out = tmp / "cases.json"
    cmd = [*_python(), "-m", "benchmarks.gpu", "--cases", str(out), "--bandwidth", str(bandwidth)]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        error = None if out.exists() else (done.stderr.strip().splitlines() or ["no output"])[-1]
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout:.0f} s"
    if error:
        return [{"group": "synthesize / transform (GPU)", "kernel": "", "size": "", "ms": None, "error": error[:200]}]
    return json.loads(out.read_text())


def targets(rows: list[dict]) -> dict:
    """Each GPU target of issue 12: met, missed, or not measured."""
    def find(*parts):
        return [r for r in rows if all(p in f"{r['group']} {r['kernel']} {r['size']}" for p in parts)]
    out = {}
    ccl = find("gpu label-26", "test_synthlung_cuda[")
    cupyx = find("gpu label-26", "test_cupyx")
    if ccl and cupyx:
        gv, ratio = ccl[0]["Gvox/s"] or 0, cupyx[0]["ms"] / ccl[0]["ms"]
        out["ccl"] = {"met": gv >= 10 and ratio >= 3, "Gvox/s": gv, "x cupyx": ratio}
    warp = find("512x512x300 (GPU)", "test_synthlung_warp_cuda")
    if warp:
        out["warp"] = {"met": (warp[0]["copy_bw_fraction"] or 0) >= 0.5, "fraction": warp[0]["copy_bw_fraction"]}
    solve = find("test_mgpcg_cuda[128")
    if solve:
        out["poisson"] = {"met": solve[0]["ms"] <= 5, "ms": solve[0]["ms"]}
    case = find("synthesize (GPU)", "512x512x300")
    if case:
        out["case"] = {"met": case[0]["ms"] <= 30, "ms": case[0]["ms"]}
    return {k: out.get(k, {"met": None}) | {"target": TARGETS[k]} for k in TARGETS}


def table(rows: list[dict]) -> str:
    """The one table: kernel, size, median ms, Gvox/s, fraction of copy bandwidth."""
    head = f"{'group':<34} {'kernel':<44} {'size':<16} {'ms':>9} {'Gvox/s':>8} {'copy bw':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        gv = "" if r.get("Gvox/s") is None else f"{r['Gvox/s']:.2f}"
        bw = "" if r.get("copy_bw_fraction") is None else f"{100 * r['copy_bw_fraction']:.0f} %"
        ms = "" if r.get("ms") is None else f"{r['ms']:.3f}"
        lines.append(f"{r['group'][:34]:<34} {r['kernel'][:44]:<44} {str(r['size'])[:16]:<16} {ms:>9} {gv:>8} "
                     f"{bw:>8}" + (f"  error: {r['error']}" if r.get("error") else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole campaign (default 480)")
    parser.add_argument("--cases", type=Path, help=argparse.SUPPRESS)  # internal: case rows to this JSON
    parser.add_argument("--bandwidth", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cases:
        with tempfile.TemporaryDirectory(prefix="synthlung-gpu-cases-") as tmpdir:
            args.cases.write_text(json.dumps(case_rows(args.bandwidth, Path(tmpdir))))
        return 0
    reason = probe()
    if reason is not None:
        print(f"benchmarks.gpu: no usable CUDA GPU here ({reason}); the campaign needs one NVIDIA GPU "
              "with CuPy and numba-cuda", file=sys.stderr)
        return NO_GPU_STATUS
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="synthlung-gpu-") as tmpdir:
        tmp = Path(tmpdir)
        env = dict(os.environ, PYTHONPATH=_site(tmp), NUMBA_ENABLE_CUDASIM="0")
        report = {"device": device_info()}
        bandwidth = copy_bandwidth()
        report["copy_bandwidth_GB/s"] = bandwidth / 1e9
        report["tests"] = _pytest(["tests", "-m", "gpu"], env, 0.3 * args.budget, tmp, "tests")
        bench_json = tmp / "bench.json"
        left = args.budget - (time.monotonic() - t0)
        report["benchmarks"] = _pytest(["benchmarks", "-m", "gpu", "--benchmark-enable",
                                        f"--benchmark-json={bench_json}", "--benchmark-max-time=0.5",
                                        "--benchmark-min-rounds=3"], env, 0.75 * left, tmp, "bench")
        rows = benchmark_rows(bench_json, bandwidth)
        rows += _cases_in_subprocess(env, bandwidth, tmp, max(60.0, args.budget - (time.monotonic() - t0)))
    report["rows"] = rows
    report["targets"] = targets(rows)
    report["seconds"] = time.monotonic() - t0
    print(f"{report['device']['name']}, driver {report['device']['driver']}, copy bandwidth "
          f"{bandwidth / 1e9:.0f} GB/s; tests: {report['tests']['tests']} run, {report['tests']['failures']} failed, "
          f"{report['tests']['errors']} errors, {report['tests']['skipped']} skipped")
    print(table(rows))
    for k, t in report["targets"].items():
        print(f"target {k}: {t['target']}: " + {True: "met", False: "missed", None: "not measured"}[t["met"]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp_out, args.out)
    failed = report["tests"]["failures"] + report["tests"]["errors"] > 0 or report["tests"]["status"] not in (0, 5)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
