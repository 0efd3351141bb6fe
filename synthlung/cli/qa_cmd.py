"""``synthlung qa GENERATED --out QA`` and ``synthlung qa score ANSWERS KEY``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InputError
from ._app import app, case_progress


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def qa(
    target: str = typer.Argument(..., help="A generated dataset folder, or the word 'score'."),
    files: Optional[List[Path]] = typer.Argument(None, help="With 'score': ANSWERS KEY."),
    out: Optional[Path] = typer.Option(None, "--out", help="QA folder to write (datasets)."),
    kit: int = typer.Option(20, "--kit", help="Real and synthetic tumours each in the reader test (0: no kit)."),
    panels: int = typer.Option(12, "--panels", help="Preview PNGs of cases, those with outliers first."),
    seed: int = typer.Option(0, "--seed", help="Seed of the reader kit's draw and shuffle."),
) -> None:
    """Realism QA of a generated dataset, or the score of a blinded reader test.

    synthlung qa GENERATED --out QA writes tumours.csv/json (one row per inserted
    tumour), summary.json/md (outliers flagged), panels/ (previews) and the reader
    kit (reader_test.html, answer_key.json: keep the key away from the readers).

    synthlung qa score ANSWERS KEY prints accuracy, sensitivity, specificity and AUC
    (synthetic is the positive class) as JSON.
    """
    if target == "score":
        if not files or len(files) != 2:
            raise InputError("qa score needs two files: ANSWERS (exported from the kit) and KEY (answer_key.json)")
        from ..qa.scoring import score
        typer.echo(json.dumps(score(files[0], files[1]), indent=1))
        return
    if files:
        raise InputError(f"qa {target}: unexpected extra arguments {[str(f) for f in files]}")
    if out is None:
        raise InputError("qa GENERATED needs --out QA (the folder to write)")
    from ..qa.generated import GeneratedDataset
    from ..qa.preview import preview
    from ..qa.reader_kit import write_reader_kit
    from ..qa.table import summarise, tumour_rows, write_table

    dataset = GeneratedDataset(target)
    rows = tumour_rows(dataset)
    written = write_table(rows, out)
    flagged = list(dict.fromkeys(o["case"] for o in summarise(rows)["outliers"]))
    cases = flagged + [r["case"] for r in dataset.records() if r["case"] not in flagged]
    with case_progress("panels") as progress:
        for i, case in enumerate(cases[:panels]):
            progress(i, min(panels, len(cases)), case)
            preview(dataset.root / "records" / f"{case}.json", out / "panels" / f"{case}.png")
    typer.echo(f"{len(rows)} tumours: {written['csv']}, {written['summary_md']}; "
               f"{min(panels, len(cases))} panels in {out / 'panels'}")
    if kit > 0:
        paths = write_reader_kit(target, out / "reader_kit", k=kit, seed=seed)
        typer.echo(f"reader kit: {paths['html']} (answer key: {paths['key']})")
