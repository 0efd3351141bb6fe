"""Faults and concurrency: one writer per folder, stale locks, leftovers, torn manifests,
orphaned workers, file modes, disk full, one-line errors whatever stderr is, banks
changed behind the pipeline's back."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _casegen import small_case
from synthlung import load, save
from synthlung.cli import main
from synthlung.datasets import ingest
from synthlung.errors import BusyError, InputError
from synthlung.hosts import HostBank, build_host_bank
from synthlung.io.folder_lock import LOCK_NAME, folder_lock
from synthlung.run.demo import write_phantom_dataset
from synthlung.run.offline import MANIFEST, generate
from synthlung.seeds import SeedBank, build_seed_bank

SMALL = dict(shape=(96, 80, 64), spacing_mm=(3.0, 3.0, 3.5))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A phantom dataset, its catalog, seed bank and host bank."""
    root = tmp_path_factory.mktemp("built")
    src = write_phantom_dataset(root / "phantom", **SMALL)
    ingest(src, root / "catalog")
    build_seed_bank(root / "catalog" / "catalog.json", root / "seeds")
    build_host_bank(root / "catalog" / "catalog.json", root / "hosts")
    return root


def _command(built: Path, what: str, out: Path) -> list[str]:
    """CLI arguments of command ``what`` writing into ``out``."""
    catalog = str(built / "catalog" / "catalog.json")
    return {"ingest": ["ingest", str(built / "phantom"), str(out)],
            "seeds": ["seeds", catalog, str(out)],
            "hosts": ["hosts", catalog, str(out)],
            "generate": ["generate", "--hosts", str(built / "hosts"), "--seeds", str(built / "seeds"),
                         "--n", "1", "--out", str(out)]}[what]


def _leftover(folder: Path) -> Path:
    """A temporary as a killed atomic write leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".case_0000.nii.gz.k3j9x_2a.tmp.nii.gz"
    tmp.write_bytes(b"half a file")
    return tmp


COMMANDS = ("ingest", "seeds", "hosts", "generate")
SUBFOLDER = {"ingest": "images", "seeds": "seeds", "hosts": "lungs", "generate": "imagesTr"}


@pytest.mark.parametrize("what", COMMANDS)
def test_second_writer_refused_and_leftovers_removed(built, tmp_path, capsys, what):
    out = tmp_path / what
    tmp = _leftover(out / SUBFOLDER[what])
    with folder_lock(out, "a test holding the lock"):
        assert main(_command(built, what, out)) == 1
        err = capsys.readouterr().err
        assert "another synthlung run is writing here" in err and "a test holding the lock" in err
        assert tmp.exists(), "a refused run must not touch the holder's temporaries"
        assert sorted(p.name for p in out.iterdir()) == sorted([LOCK_NAME, SUBFOLDER[what]])
    assert main(_command(built, what, out)) == 0
    assert not tmp.exists(), "a run removes the temporaries a killed run of it left"
    assert (out / LOCK_NAME).read_bytes() == b"", "a released lock file is empty"


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "cat"
    code = ("import sys, time; from synthlung.io.folder_lock import folder_lock\n"
            f"with folder_lock({str(out)!r}, 'doomed'):\n    print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(BusyError, match=f"pid.*{proc.pid}.*doomed"), folder_lock(out, "second"):
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "doomed" in (out / LOCK_NAME).read_text(), "the killed holder left its lock file"
    small_case(tmp_path / "src", "a_image.nii.gz", "a_label.nii.gz")
    assert len(ingest(tmp_path / "src", out).cases) == 1
    assert (out / LOCK_NAME).read_bytes() == b"", "the run took the lock over and released it"


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat_file.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_when_the_parent_is_killed(built, tmp_path):
    cmd = [sys.executable, "-m", "synthlung"] + _command(built, "generate", tmp_path / "g")
    cmd[cmd.index("--n") + 1] = "40"
    proc = subprocess.Popen(cmd + ["--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and proc.poll() is None:
        workers = [p for p in _children(proc.pid)
                   if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        if len(workers) == 2:
            break
        time.sleep(0.1)
    assert len(workers) == 2, "the run should have started two workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    survivors = [p for p in workers if _alive(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    assert not survivors, "workers outlived their killed parent"


def test_resume_repairs_a_torn_manifest_line(built, tmp_path):
    hosts, seeds, out = built / "hosts", built / "seeds", tmp_path / "g"
    generate(hosts, seeds, 2, out, seed=5)
    with open(out / MANIFEST, "a") as fh:
        fh.write('{"case": "case_0002", "ho')              # a line torn by a kill mid-write
    generate(hosts, seeds, 3, out, seed=5, resume=True)
    lines = (out / MANIFEST).read_text().splitlines()
    assert sorted(json.loads(line)["index"] for line in lines) == [0, 1, 2]   # every line whole


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_honour_the_umask(built, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        ingest(built / "phantom", tmp_path / "cat", canonical=True)
        build_seed_bank(tmp_path / "cat" / "catalog.json", tmp_path / "seeds")
        generate(built / "hosts", built / "seeds", 1, tmp_path / "g")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 10
    modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert modes == {oct(mode)}, f"file modes {modes}"


def _limit_file_size() -> None:
    """In the child: files may not grow beyond 2 KiB, and going past it fails the write (EFBIG)
    rather than killing the process (SIGXFSZ ignored), as a full disk fails it with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_a_full_disk_names_the_file_in_one_line(built, tmp_path):
    out = tmp_path / "cat"
    proc = subprocess.run([sys.executable, "-m", "synthlung", "ingest", str(built / "phantom"), str(out),
                           "--canonical"], capture_output=True, text=True, preexec_fn=_limit_file_size,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert f"{out}/images/" in lines[0] and ".nii.gz: cannot write: File too large" in lines[0]
    assert not [p for p in out.rglob(".*.tmp*")], "the failed write left its temporary"


@pytest.mark.parametrize("args,message", [
    (["ingest", "/no/such/" + "very-long-folder-name-" * 6, "OUT"], "very-long-folder-name-: no such file"),
    (["ingest", "/no/such/[bold]folder", "OUT"], "[bold]folder: no such file"),   # not taken as markup
    (["generate", "--hosts", "H", "--seeds", "S", "--n", "1", "--out", "O", "--seed", "1e23"],
     "Invalid value for '--seed'"),
])
def test_errors_are_one_line_when_stderr_is_not_a_terminal(tmp_path, args, message):
    args = [str(tmp_path / a) if a in ("OUT", "H", "S", "O") else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "synthlung", *args], capture_output=True, text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    if args[0] == "ingest":
        assert args[1] in lines[0], "the path must not be cut"


@pytest.mark.parametrize("option,value,message", [
    ("--workers", "0", "workers=0: the number of worker processes must be an integer from 1"),
    ("--seed", "-1", "seed=-1: the run seed"),
    ("--seed", str(10**23), f"seed={10**23}: the run seed"),
])
def test_bad_run_numbers_are_refused(built, tmp_path, capsys, option, value, message):
    out = tmp_path / "g"
    assert main(_command(built, "generate", out) + [option, value]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists(), "nothing is written for a refused run"
    with pytest.raises(InputError, match="seed=1e\\+23"):
        generate(built / "hosts", built / "seeds", 1, out, seed=1e23)


# ---------------------------------------------------------------- banks verified against their content hashes

def _bank_copies(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the seed and host banks; the host bank's first image is copied too, and repointed."""
    seeds = Path(shutil.copytree(built / "seeds", tmp_path / "seeds"))
    hosts = Path(shutil.copytree(built / "hosts", tmp_path / "hosts"))
    index = json.loads((hosts / "index.json").read_text())
    image = Path(shutil.copy(index["hosts"][0]["image"], tmp_path / "host_image.nii.gz"))
    index["hosts"][0]["image"] = str(image)
    (hosts / "index.json").write_text(json.dumps(index))
    return hosts, seeds


def test_generate_refuses_a_seed_file_replaced_by_another(built, tmp_path, capsys):
    hosts, seeds = _bank_copies(built, tmp_path)
    records = SeedBank.open(seeds).records
    first, second = (seeds / r["file"] for r in records[:2])
    first.write_bytes(second.read_bytes())
    out = tmp_path / "g"
    assert main(["generate", "--hosts", str(hosts), "--seeds", str(seeds), "--n", "1", "--out", str(out)]) == 1
    assert f"error: {first}: seed file changed since it was recorded" in capsys.readouterr().err
    assert not out.exists(), "nothing is written when a bank fails its check"


def test_generate_refuses_a_host_image_changed_after_hosts(built, tmp_path):
    hosts, seeds = _bank_copies(built, tmp_path)
    generate(hosts, seeds, 1, tmp_path / "before")              # the copies pass their check
    image_path = Path(json.loads((hosts / "index.json").read_text())["hosts"][0]["image"])
    image = load(image_path)
    save(image.with_array(image.array + 1), image_path)
    with pytest.raises(InputError, match=f"{image_path}: image of host .* changed since it was recorded"):
        generate(hosts, seeds, 1, tmp_path / "after")


def test_resume_refuses_a_bank_changed_since_the_first_run(built, tmp_path):
    hosts, seeds = _bank_copies(built, tmp_path)
    out = tmp_path / "g"
    generate(hosts, seeds, 1, out, seed=2)
    bank = SeedBank.open(seeds)
    kept = [r for r in bank.records if r["seed_id"] != bank.records[0]["seed_id"]]
    index = json.loads((seeds / "index.json").read_text())
    index["seeds"] = kept
    (seeds / "index.json").write_text(json.dumps(index))        # a consistent bank, but another one
    with pytest.raises(InputError, match="differ from the first run: seeds_index_sha256 \\(a bank changed"):
        generate(hosts, seeds, 2, out, seed=2, resume=True)


def test_lung_mask_of_the_wrong_shape_is_refused(built, tmp_path):
    hosts, _ = _bank_copies(built, tmp_path)
    entry = HostBank.open(hosts).entries[0]
    lungs = load(hosts / entry["lungs"], check_units=False)
    save(lungs.crop((0, 0, 0), np.array(lungs.shape) - 1), hosts / entry["lungs"])
    with pytest.raises(InputError, match=r"lungs/.*\.nii\.gz: lung mask shape \(95, 79, 63\) differs from host"):
        HostBank.open(hosts)[0]
    with pytest.raises(InputError, match="lung mask of host .* changed since it was recorded"):
        HostBank.open(hosts).verify()
