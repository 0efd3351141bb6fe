"""synthlung qa: the per-tumour table and summary, previews, the reader kit in a real browser, scoring."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from synthlung.cli import main
from synthlung.datasets import ingest
from synthlung.errors import InputError
from synthlung.hosts import build_host_bank
from synthlung.qa.preview import preview
from synthlung.qa.reader_kit import export_from_dom, write_reader_kit
from synthlung.qa.scoring import auc, score
from synthlung.run.demo import write_phantom_dataset
from synthlung.run.offline import generate
from synthlung.seeds import build_seed_bank

SMALL = dict(shape=(96, 80, 64), spacing_mm=(3.0, 3.0, 3.5))


def _generated(root: Path, source: Path, n: int) -> Path:
    ingest(source, root / "catalog")
    build_seed_bank(root / "catalog" / "catalog.json", root / "seeds")
    build_host_bank(root / "catalog" / "catalog.json", root / "hosts")
    generate(root / "hosts", root / "seeds", n, root / "gen", seed=3)
    return root / "gen"


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    return _generated(root, write_phantom_dataset(root / "phantom", **SMALL), 3)


def test_qa_table_summary_panels_and_kit(phantom_dataset, tmp_path):
    out = tmp_path / "qa"
    assert main(["qa", str(phantom_dataset), "--out", str(out), "--kit", "2", "--panels", "2"]) == 0
    records = [json.loads(p.read_text()) for p in sorted((phantom_dataset / "records").glob("*.json"))]
    with open(out / "tumours.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(r["tumors_inserted"] for r in records) >= 2
    table = json.loads((out / "tumours.json").read_text())
    assert [list(r) for r in rows] == [list(r) for r in table]
    assert [r["seed_id"] for r in rows] == [r["seed_id"] for r in table]
    by_case = {r["case"]: r for r in records}
    for row in table:
        t = by_case[row["case"]]["tumors"][row["tumour"] - 1]
        assert row["seed_id"] == t["seed_id"]
        assert row["volume_ml"] == pytest.approx(t["size"]["volume_ml"], rel=1e-6)
        assert row["inside_lung_fraction"] >= 0.95
        if row["core_error_hu"] is not None:  # alpha keeps the morphed seed's core density
            assert abs(row["core_error_hu"]) < 30.0
            # the texture measures of synthlung.qa.realism, against the host's own soft tissue
            assert row["noise_ratio"] >= 0.0 and row["host_tissue_noise_hu"] > 5.0
            assert row["rise_along_mm"] > 0 and row["rise_across_mm"] > 0 and row["hu_change_along_across"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_tumours"] == len(table) and summary["measures"]["diameter_mm"]["n"] == len(table)
    assert (out / "summary.md").read_text().startswith(f"# Realism of {len(table)} inserted tumours")
    assert len(list((out / "panels").glob("case_*.png"))) == 2
    key = json.loads((out / "reader_kit" / "answer_key.json").read_text())
    truths = sorted(c["truth"] for c in key["cases"].values())
    assert truths == ["real", "real", "synthetic", "synthetic"]
    page = (out / "reader_kit" / "reader_test.html").read_text()
    assert page.count("data:image") <= 1 and page.count('"png": "iVBOR') == 4  # images inline, nothing fetched
    assert "truth" not in page and "seed_id" not in page and "case_000" not in page  # blinded


def test_outliers_are_flagged_by_the_realism_ranges():
    from synthlung.qa.table import summarise
    base = {"case": "c", "seed_id": "s", "host": "h", "method": "alpha", "contact_site": "none",
            "seed_contact_site": "none", "volume_ml": 1.0, "inside_lung_fraction": 1.0, "core_error_hu": 0.5,
            "halo_hu": 0.0, "rise_vs_seed": 1.0}
    rows = [dict(base, tumour=i, core_error_hu=0.1 * i) for i in range(1, 8)]
    rows.append(dict(base, tumour=8, core_error_hu=45.0, volume_ml=30.0))
    rows.append(dict(base, tumour=9, halo_hu=9.0))
    flagged = {(o["tumour"], o["measure"]): o["why"] for o in summarise(rows)["outliers"]}
    assert flagged[(8, "core_error_hu")].startswith("outside -30..30")
    assert "robust SD" in flagged[(9, "halo_hu")]
    assert (8, "volume_ml") not in flagged  # sizes vary by design
    assert len(flagged) == 2


def test_preview_before_after_windows_and_optional_contour(phantom_dataset, tmp_path):
    from PIL import Image
    record = sorted((phantom_dataset / "records").glob("*.json"))[0]
    n = json.loads(record.read_text())["tumors_inserted"]
    plain = np.asarray(Image.open(preview(record, tmp_path / "a.png")).convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(preview(record, tmp_path / "b.png", contour=True)).convert("RGB")).astype(int)
    red = lambda im: int(((im[..., 0] > 150) & (im[..., 1] < 80) & (im[..., 2] < 80)).sum())
    assert red(plain) == 0 and red(drawn) > 50
    assert plain.shape[0] == pytest.approx(90 * 2.4 * 2 * n, abs=2)  # two rows (before, after) per tumour


def test_score_by_hand(tmp_path):
    key = {"kit": "k1", "cases": {"a": {"truth": "real"}, "b": {"truth": "real"},
                                  "c": {"truth": "synthetic"}, "d": {"truth": "synthetic"}}}
    answers = {"kit": "k1", "answers": [{"id": "a", "answer": "real", "confidence": 5},
                                        {"id": "b", "answer": "synthetic", "confidence": 2},
                                        {"id": "c", "answer": "synthetic", "confidence": 4},
                                        {"id": "d", "answer": "real", "confidence": 1}]}
    (tmp_path / "key.json").write_text(json.dumps(key))
    (tmp_path / "ans.json").write_text(json.dumps(answers))
    s = score(tmp_path / "ans.json", tmp_path / "key.json")
    # scores: a -5, b +2 (real); c +4, d -1 (synthetic): pairs c>a, c>b, d>a, d<b -> 3 of 4
    assert s["accuracy"] == 0.5 and s["sensitivity"] == 0.5 and s["specificity"] == 0.5 and s["auc"] == 0.75
    assert auc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    (tmp_path / "other.json").write_text(json.dumps(dict(answers, kit="k2")))
    with pytest.raises(InputError, match="kit k2"):
        score(tmp_path / "other.json", tmp_path / "key.json")
    assert main(["qa", "score", str(tmp_path / "ans.json")]) == 1


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="needs Chromium (apt-get install chromium)")
def test_reader_kit_in_a_headless_browser(phantom_dataset, tmp_path, capsys):
    paths = write_reader_kit(phantom_dataset, tmp_path / "kit", k=2, seed=1)
    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          paths["html"].resolve().as_uri() + "?autotest"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    exported = export_from_dom(dom)
    key = json.loads(paths["key"].read_text())
    ids = sorted(key["cases"])
    assert exported["kit"] == key["kit"] and [a["id"] for a in exported["answers"]] == ids
    # The hook pressed r/S then 1..5 on case n; the Blob holds exactly the export text.
    for n, a in enumerate(exported["answers"]):
        assert a == {"id": ids[n], "answer": "synthetic" if n % 2 else "real", "confidence": 1 + n % 5}
    assert f'data-blob-bytes="{len(json.dumps(exported, indent=1))}"' in dom
    assert f"{len(ids)} answered" in dom
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(exported))
    capsys.readouterr()
    assert main(["qa", "score", str(answers), str(paths["key"])]) == 0
    result = json.loads(capsys.readouterr().out)
    right = sum(key["cases"][a["id"]]["truth"] == a["answer"] for a in exported["answers"])
    assert result["answered"] == 4 and result["accuracy"] == right / 4


def test_real_tumour_in_the_real_chest_ct(tmp_path, lung1_paths, chest_ct_path):
    """lung1 (seed and host) and the chest CT: the table on real anatomy and a kit with lung1's own tumour."""
    src = tmp_path / "src"
    src.mkdir()
    for name, path in (("lung1_image.nrrd", lung1_paths[0]), ("lung1_label.nrrd", lung1_paths[1]),
                       ("chest_image.nii.gz", chest_ct_path)):
        (src / name).symlink_to(path)
    gen = _generated(tmp_path, src, 2)
    out = tmp_path / "qa"
    assert main(["qa", str(gen), "--out", str(out), "--kit", "1", "--panels", "0"]) == 0
    table = json.loads((out / "tumours.json").read_text())
    assert table and all(r["seed_id"] == "lung1-c001" and r["inside_lung_fraction"] >= 0.95 for r in table)
    cored = [r for r in table if r["core_error_hu"] is not None]
    assert cored and all(abs(r["core_error_hu"]) < 30 and abs(r["halo_hu"]) < 20 for r in cored)
    assert all(0.3 < r["noise_ratio"] < 3.0 for r in cored if r["diameter_mm"] >= 10.0)
    key = json.loads((out / "reader_kit" / "answer_key.json").read_text())
    real = [c for c in key["cases"].values() if c["truth"] == "real"]
    assert len(real) == 1 and real[0]["seed_id"] == "lung1-c001"


class _DevTools:
    """A minimal Chrome DevTools Protocol client over one browser websocket (flat sessions)."""

    def __init__(self, url: str):
        import websocket
        self.ws = websocket.create_connection(url, timeout=30)
        self.n = 0

    def call(self, method: str, session: str | None = None, **params):
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, session: str, expression: str):
        return self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)["result"].get("value")


@pytest.mark.skipif(_chromium() is None, reason="needs Chromium (apt-get install chromium)")
def test_reader_answers_downloaded_from_the_page_are_scored(phantom_dataset, tmp_path, capsys):
    """Key presses and the Download button in Chromium (DevTools protocol): the file it saves is what qa score reads."""
    pytest.importorskip("websocket", reason="needs websocket-client (the dev extra)")
    import time
    paths = write_reader_kit(phantom_dataset, tmp_path / "kit", k=2, seed=2)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    proc = subprocess.Popen([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                             f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("DevTools listening on "):
                url = line.split(" on ", 1)[1].strip()
                break
        cdp = _DevTools(url)
        cdp.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        target = cdp.call("Target.createTarget", url=paths["html"].resolve().as_uri())["targetId"]
        session = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        deadline = time.monotonic() + 30
        shown = "document.readyState === 'complete' && !!document.getElementById('view') && " \
                "document.getElementById('view').src.startsWith('data:image/png')"
        while cdp.evaluate(session, shown) is not True and time.monotonic() < deadline:  # the kit's page, shown
            time.sleep(0.1)
        cdp.call("Page.enable", session)
        for n in range(4):  # a reader: synthetic on the first two cases, real on the others, confidence 5, 4, ...
            for key in ("s" if n < 2 else "r", str(5 - n)):
                for kind in ("keyDown", "keyUp"):
                    text = key if kind == "keyDown" else ""
                    cdp.call("Input.dispatchKeyEvent", session, type=kind, key=key, text=text)
        assert "(4 of 4), 4 answered" in cdp.evaluate(session, "document.getElementById('status').textContent")
        cdp.evaluate(session, "document.getElementById('download').click()")
        saved = downloads / f"answers-{json.loads(paths['key'].read_text())['kit']}.json"
        while not saved.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert saved.exists(), list(downloads.iterdir())
    finally:
        proc.kill()
        proc.wait()
    exported = json.loads(saved.read_text())
    assert [(a["answer"], a["confidence"]) for a in exported["answers"]] == \
        [("synthetic", 5), ("synthetic", 4), ("real", 3), ("real", 2)]
    capsys.readouterr()
    assert main(["qa", "score", str(saved), str(paths["key"])]) == 0
    result = json.loads(capsys.readouterr().out)
    key = json.loads(paths["key"].read_text())["cases"]
    truth = [key[f"case-{i:02d}"]["truth"] for i in range(1, 5)]
    assert result["answered"] == 4
    assert result["accuracy"] == sum(t == a for t, a in zip(truth, ["synthetic"] * 2 + ["real"] * 2)) / 4
