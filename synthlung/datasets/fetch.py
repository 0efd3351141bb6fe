"""Download, check, unpack and ingest public datasets (the Decathlon Task06_Lung archive).

The download resumes: bytes arrive in ``DEST/<archive>.part`` and a rerun asks
the server for the rest (HTTP Range). pooch checks the md5 before the archive
takes its final name; a mismatch removes the download and is an error.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import InputError, SynthlungError
from .catalog import Catalog
from .ingestion import Progress, ingest

# The address and md5 MONAI's DecathlonDataset pins for Task06_Lung.
MSD_LUNG_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task06_Lung.tar"
MSD_LUNG_MD5 = "8afd997733c7fc0432f71255ba4e52dc"

ByteProgress = Callable[[int, int], None]


class ResumableDownloader:
    """A pooch downloader that continues ``part`` where an interrupted download stopped."""

    def __init__(self, part: Path, progress: ByteProgress | None = None, timeout_s: float = 60.0):
        self.part, self.progress, self.timeout_s = part, progress, timeout_s

    def __call__(self, url: str, output_file, pooch=None, check_only: bool = False) -> bool | None:
        import requests
        if check_only:
            return requests.head(url, allow_redirects=True, timeout=self.timeout_s).ok
        have = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout_s) as response:
            if not (have and response.status_code == 416):     # 416: nothing left to fetch
                response.raise_for_status()
                if response.status_code != 206:                 # server ignored the range: restart
                    have = 0
                total = have + int(response.headers.get("Content-Length", 0))
                with open(self.part, "ab" if have else "wb") as fh:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        fh.write(chunk)
                        have += len(chunk)
                        if self.progress:
                            self.progress(have, total)
        os.replace(self.part, output_file)
        return None


def download(url: str, md5: str, dest: Path, progress: ByteProgress | None = None) -> Path:
    """``dest/<name from url>``, downloaded (resuming) unless already there with the right md5."""
    import pooch
    import requests
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    dest.mkdir(parents=True, exist_ok=True)
    downloader = ResumableDownloader(dest / f"{name}.part", progress)
    try:
        return Path(pooch.retrieve(url, known_hash=f"md5:{md5}", fname=name, path=dest,
                                   downloader=downloader, progressbar=False))
    except requests.RequestException as exc:
        raise SynthlungError(f"download of {url} failed: {exc} (rerun to resume)") from exc
    except ValueError as exc:
        if "hash" not in str(exc).lower():
            raise
        raise SynthlungError(f"{url}: checksum mismatch, the download was removed: {exc}") from exc


def unpack(archive: Path, dest: Path) -> list[Path]:
    """Extract ``archive`` into ``dest`` (safely: no paths outside it); returns the top-level entries.

    Extraction goes to a temporary folder first, so a failure leaves nothing
    half-unpacked; a marker file makes a rerun skip the work.
    """
    marker = dest / f".{archive.name}.unpacked"
    if marker.is_file():
        return [dest / n for n in marker.read_text().split("\n") if n]
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{archive}: cannot unpack archive: {exc}") from exc
        names = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("."))
        for name in names:
            target = dest / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    marker.write_text("\n".join(names) + "\n")
    return [dest / n for n in names]


def fetch_msd_lung(dest: str | os.PathLike, out: str | os.PathLike | None = None, *,
                   url: str = MSD_LUNG_URL, md5: str = MSD_LUNG_MD5, canonical: bool = False,
                   skip_bad: bool = False, progress: Progress | None = None,
                   download_progress: ByteProgress | None = None) -> Catalog:
    """Download Task06_Lung into ``dest``, unpack it and ingest it into ``out`` (default ``dest``)."""
    dest = Path(dest)
    archive = download(url, md5, dest, download_progress)
    tasks = [p for p in unpack(archive, dest) if (p / "dataset.json").is_file()]
    if len(tasks) != 1:
        raise InputError(f"{archive}: expected one task folder with a dataset.json, found {len(tasks)}")
    return ingest(tasks[0], dest if out is None else out, format="msd", canonical=canonical,
                  skip_bad=skip_bad, progress=progress)
