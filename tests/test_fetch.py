"""``synthlung fetch msd-lung``: download (resumable, md5-checked) from a local server, unpack, ingest."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from _casegen import make_msd
from synthlung import load_catalog
from synthlung.cli import main
from synthlung.datasets.fetch import fetch_msd_lung
from synthlung.errors import SynthlungError


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:
    """A tiny Task06_Lung.tar: two synthetic cases, dataset.json, macOS junk files."""
    root = make_msd(tmp_path_factory.mktemp("tar") / "Task06_Lung")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname="Task06_Lung")
    return buf.getvalue()


@pytest.fixture()
def server(archive):
    """Serves the archive on 127.0.0.1 with HTTP Range support; records each request's Range header."""
    ranges: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            ranges.append(self.headers.get("Range"))
            start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
            if start >= len(archive):
                self.send_response(416)
                self.end_headers()
                return
            body = archive[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(archive) - 1}/{len(archive)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/Task06_Lung.tar", ranges
    httpd.shutdown()
    httpd.server_close()


def test_fetch_downloads_unpacks_and_ingests(tmp_path, server, archive):
    url, ranges = server
    md5 = hashlib.md5(archive).hexdigest()
    dest = tmp_path / "msd"
    assert main(["fetch", "msd-lung", str(dest), "--url", url, "--md5", md5]) == 0
    catalog = load_catalog(dest)
    assert catalog.format == "msd" and [c.id for c in catalog.cases] == ["lung_001", "lung_002"]
    assert all(c.ok and c.tumor_voxels == 12 for c in catalog.cases)
    assert (dest / "Task06_Lung" / "imagesTr" / "._lung_001.nii.gz").exists()   # junk unpacked, ignored
    assert hashlib.md5((dest / "Task06_Lung.tar").read_bytes()).hexdigest() == md5
    assert ranges == [None]
    assert main(["fetch", "msd-lung", str(dest), "--url", url, "--md5", md5]) == 0
    assert ranges == [None]                       # rerun: archive present with the right md5, no request


def test_fetch_resumes_a_partial_download(tmp_path, server, archive):
    url, ranges = server
    dest = tmp_path / "msd"
    dest.mkdir()
    half = len(archive) // 2
    (dest / "Task06_Lung.tar.part").write_bytes(archive[:half])
    catalog = fetch_msd_lung(dest, tmp_path / "cat", url=url, md5=hashlib.md5(archive).hexdigest(),
                             canonical=True)
    assert ranges == [f"bytes={half}-"]
    assert (dest / "Task06_Lung.tar").read_bytes() == archive and not (dest / "Task06_Lung.tar.part").exists()
    assert catalog.canonical and catalog.cases[0].image_path() == tmp_path / "cat" / "images" / "lung_001.nii.gz"


def test_fetch_wrong_checksum_is_an_error(tmp_path, server, capsys):
    url, _ = server
    dest = tmp_path / "msd"
    with pytest.raises(SynthlungError, match="checksum mismatch"):
        fetch_msd_lung(dest, url=url, md5="0" * 32)
    capsys.readouterr()
    assert main(["fetch", "msd-lung", str(dest), "--url", url, "--md5", "0" * 32]) == 1
    assert "checksummismatch" in "".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in dest.iterdir()) == []     # nothing half-downloaded or unpacked


def test_fetch_unreachable_server_is_an_error(tmp_path):
    with pytest.raises(SynthlungError, match="download of http://127.0.0.1:9/x.tar failed"):
        fetch_msd_lung(tmp_path, url="http://127.0.0.1:9/x.tar", md5="0" * 32)
