"""The blinded reader-test kit: K real and K synthetic tumours rendered alike, one offline HTML page.

Real tumours are the seeds in their own scans (the seed record's source image,
centred on the seed's centroid); synthetic ones are tumours inserted in a
generated dataset (centred on their instance's centroid). Every case is one
image: the lung window over the mediastinal window, axial, coronal and
sagittal, :data:`FOV_MM` across at :data:`PIXEL_MM` per pixel (one physical
scale), no label drawn. Cases are shuffled and named ``case-01``... by the
kit's seed; which is which is written to a separate key file, with each
case's scan spacing (a reader may tell a 5 mm scan from a 1.5 mm one, so a
score can be looked at per spacing).

The page (``reader_test.html``) holds its images inline (base64 PNG) and runs
offline from the file, without a server: one case at a time, ``R`` real, ``S``
synthetic, then ``1``-``5`` confidence (moves on), arrows to go back and forth,
and a button that downloads the answers (a JSON Blob) for ``synthlung qa score``.
Opened with ``?autotest`` it answers every case through its own key handler
and writes the export into ``<pre id="export">`` (how the browser test reads it).
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path, write_json
from .generated import GeneratedDataset
from .preview import tumour_centre_mm
from .render import sheet, triplanar

FOV_MM = 64.0
PIXEL_MM = 0.4
KIT_STREAM = 0x4B17
"""Second word of the kit's Philox key (the first is the kit's seed)."""


def png_bytes(grey: np.ndarray) -> bytes:
    """An 8-bit grey image as PNG bytes."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def render_case(array: Any, affine: np.ndarray, centre_mm: np.ndarray) -> np.ndarray:
    """The kit's view of one tumour: two windows by three planes, one physical scale."""
    return sheet(triplanar(array, affine, centre_mm, FOV_MM, PIXEL_MM))


def real_tumours(dataset: GeneratedDataset) -> list[dict]:
    """The seeds whose source scan is on disk: seed id, scan path and centroid (world mm)."""
    out = []
    for r in dataset.seed_bank.records:
        image = (r.get("source") or {}).get("image")
        if image and Path(image).exists():
            out.append({"seed_id": r["seed_id"], "image": image, "centre_mm": r["centroid_mm"]})
    return out


def synthetic_tumours(dataset: GeneratedDataset) -> list[dict]:
    """Every inserted tumour: case and instance number."""
    return [{"case": rec["case"], "tumour": k} for rec in dataset.records() for k in range(1, len(rec["tumors"]) + 1)]


def write_reader_kit(generated: str | Path, out: str | Path, k: int = 20, seed: int = 0) -> dict[str, Path]:
    """Write ``reader_test.html`` and ``answer_key.json`` under ``out``; returns their paths.

    ``k`` real and ``k`` synthetic tumours (fewer, equal numbers, when the
    dataset has fewer), drawn and shuffled with Philox key ``(seed, KIT_STREAM)``.
    """
    from ..io import load
    dataset = GeneratedDataset(generated)
    real, synthetic = real_tumours(dataset), synthetic_tumours(dataset)
    if not real:
        raise InputError(f"{dataset.run['seeds']}: no seed's source scan is on disk, so there are no real "
                         "tumours to show")
    if not synthetic:
        raise InputError(f"{generated}: no inserted tumour in the dataset")
    n = min(k, len(real), len(synthetic))
    rng = np.random.Generator(np.random.Philox(key=np.array([int(seed), KIT_STREAM], dtype=np.uint64)))
    chosen = [("real", real[i]) for i in sorted(rng.choice(len(real), n, replace=False))]
    chosen += [("synthetic", synthetic[i]) for i in sorted(rng.choice(len(synthetic), n, replace=False))]
    records = {rec["case"]: rec for rec in dataset.records()}
    images: list[bytes] = []
    for truth, item in chosen:
        if truth == "real":
            scan = load(item["image"])
            grey = render_case(scan.array, scan.affine, np.asarray(item["centre_mm"]))
        else:
            rec = records[item["case"]]
            scan = dataset.volume(rec, "image")
            instances = np.asarray(dataset.volume(rec, "instances").array)
            grey = render_case(scan.array, scan.affine, tumour_centre_mm(rec, instances, scan.affine, item["tumour"]))
        item["spacing_mm"] = [round(v, 4) for v in scan.spacing]  # readers may tell thick slices apart
        images.append(png_bytes(grey))
    order = rng.permutation(len(chosen))
    kit = hashlib.sha256(b"".join(images[i] for i in order)).hexdigest()[:12]
    cases, key = [], {}
    for rank, i in enumerate(order, start=1):
        cid = f"case-{rank:02d}"
        cases.append({"id": cid, "png": base64.b64encode(images[i]).decode("ascii")})
        key[cid] = {"truth": chosen[i][0], **chosen[i][1]}
    out = Path(out)
    paths = {"html": out / "reader_test.html", "key": out / "answer_key.json"}
    page = PAGE.replace("__KIT__", json.dumps({"kit": kit, "fov_mm": FOV_MM, "cases": cases}))
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(page, encoding="utf-8")
    write_json(paths["key"], {"kit": kit, "seed": seed, "fov_mm": FOV_MM, "pixel_mm": PIXEL_MM,
                              "cases": key})
    return paths


def export_from_dom(dom: str) -> dict:
    """The answers export that an ``?autotest`` run wrote into the page's ``<pre id="export">``."""
    start = dom.find('<pre id="export"')
    if start < 0:
        raise InputError("no <pre id=\"export\"> in the page")
    body = dom[dom.index(">", start) + 1:dom.index("</pre>", start)]
    return json.loads(html.unescape(body))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>synthlung reader test</title>
<style>
body { background: #111; color: #ddd; font: 15px sans-serif; margin: 1.5em; }
img { image-rendering: pixelated; display: block; margin: 0.8em 0; width: 100%; max-width: 980px; }
button { font-size: 15px; margin-right: 0.5em; padding: 0.3em 0.8em; }
.on { background: #ca4; }
#help { max-width: 60em; color: #aaa; }
</style></head><body>
<h2>Real or synthetic?</h2>
<p id="help">Each case is one lung tumour at the centre of the views: top row lung window, bottom row
mediastinal window; columns axial, coronal, sagittal (radiological orientation), every view the same
physical size. Press <b>R</b> (real) or <b>S</b> (synthetic), then <b>1</b>-<b>5</b> for your
confidence (1 a guess, 5 certain), which moves to the next case. Arrow keys go back and forth.
When done, download your answers and send the file; it holds no image.</p>
<div id="status"></div>
<img id="view" alt="case">
<div>
 <button id="real">Real (R)</button><button id="synthetic">Synthetic (S)</button>
 <span id="confs"></span>
 <button id="prev">&larr;</button><button id="next">&rarr;</button>
 <button id="download">Download answers</button>
</div>
<pre id="export" hidden></pre>
<script>
"use strict";
const KIT = __KIT__;
const answers = {};
let at = 0;
const $ = (id) => document.getElementById(id);
for (let c = 1; c <= 5; c++) {
  const b = document.createElement("button"); b.textContent = c; b.id = "conf" + c;
  b.onclick = () => confidence(c); $("confs").appendChild(b);
}
function show() {
  const c = KIT.cases[at], a = answers[c.id] || {};
  $("view").src = "data:image/png;base64," + c.png;
  const done = Object.keys(answers).filter((k) => answers[k].answer && answers[k].confidence).length;
  $("status").textContent = `${c.id} (${at + 1} of ${KIT.cases.length}), ${done} answered; ` +
    `views ${KIT.fov_mm} mm across`;
  $("real").className = a.answer === "real" ? "on" : "";
  $("synthetic").className = a.answer === "synthetic" ? "on" : "";
  for (let k = 1; k <= 5; k++) $("conf" + k).className = a.confidence === k ? "on" : "";
}
function go(step) { at = Math.min(Math.max(at + step, 0), KIT.cases.length - 1); show(); }
function answer(kind) {
  const id = KIT.cases[at].id;
  answers[id] = Object.assign({}, answers[id], {answer: kind}); show();
}
function confidence(c) {
  const id = KIT.cases[at].id;
  if (!answers[id] || !answers[id].answer) return;
  answers[id].confidence = c; go(1);
}
function exportText() {
  const list = KIT.cases.filter((c) => answers[c.id] && answers[c.id].answer && answers[c.id].confidence)
    .map((c) => ({id: c.id, answer: answers[c.id].answer, confidence: answers[c.id].confidence}));
  return JSON.stringify({kit: KIT.kit, answers: list}, null, 1);
}
function exportBlob() { return new Blob([exportText()], {type: "application/json"}); }
function download() {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(exportBlob()); a.download = `answers-${KIT.kit}.json`;
  document.body.appendChild(a); a.click(); a.remove();
}
document.addEventListener("keydown", (e) => {
  const k = e.key.toLowerCase();
  if (k === "r") answer("real");
  else if (k === "s") answer("synthetic");
  else if (k >= "1" && k <= "5") confidence(Number(k));
  else if (k === "arrowright") go(1);
  else if (k === "arrowleft") go(-1);
});
$("real").onclick = () => answer("real");
$("synthetic").onclick = () => answer("synthetic");
$("prev").onclick = () => go(-1);
$("next").onclick = () => go(1);
$("download").onclick = download;
show();
if (new URLSearchParams(location.search).has("autotest")) {
  // The browser test's hook: answer every case through the key handler, as a reader would.
  const press = (key) => document.dispatchEvent(new KeyboardEvent("keydown", {key}));
  for (let n = 0; n < KIT.cases.length; n++) { press(n % 2 ? "S" : "r"); press(String(1 + (n % 5))); }
  const text = exportText(), pre = $("export");
  pre.textContent = text; pre.hidden = false;
  pre.dataset.blobBytes = String(exportBlob().size);
  pre.dataset.imagesShown = String(KIT.cases.length);
}
</script></body></html>
"""
