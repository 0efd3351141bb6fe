"""Score a reader test: the answers a reader exported from the kit against the kit's answer key.

The positive class is *synthetic*. Each answer is real or synthetic with a
confidence from 1 (a guess) to 5 (certain); its score on one axis is
``+confidence`` for synthetic and ``-confidence`` for real, and the AUC is the
probability that a synthetic case scores above a real one (ties count half;
the Mann-Whitney statistic). 0.5 means the reader cannot tell them apart.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

TRUTHS = ("real", "synthetic")


def _read(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from exc
    if not isinstance(data, dict) or "kit" not in data:
        raise InputError(f"{path}: not a reader-test {what} (no 'kit' field)")
    return data


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive`` (NaN without both classes)."""
    pos, neg = scores[positive], scores[~positive]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def score(answers_path: str | Path, key_path: str | Path) -> dict[str, Any]:
    """Accuracy, sensitivity (synthetic called synthetic), specificity (real called real) and AUC."""
    answers, key = _read(Path(answers_path), "answers file"), _read(Path(key_path), "answer key")
    if answers["kit"] != key["kit"]:
        raise InputError(f"{answers_path}: answers for kit {answers['kit']}, but {key_path} is the key of kit "
                         f"{key['kit']}")
    truth = {cid: c["truth"] for cid, c in key["cases"].items()}
    given: dict[str, tuple[str, int]] = {}
    for a in answers.get("answers", []):
        cid, ans, conf = a.get("id"), a.get("answer"), a.get("confidence")
        if cid not in truth:
            raise InputError(f"{answers_path}: case {cid!r} is not in the kit")
        if ans not in TRUTHS or not isinstance(conf, int) or not 1 <= conf <= 5:
            raise InputError(f"{answers_path}: case {cid}: answer {ans!r} / confidence {conf!r}: expected real or "
                             "synthetic and a whole number 1-5")
        given[cid] = (ans, conf)
    ids = sorted(given)
    is_syn = np.array([truth[c] == "synthetic" for c in ids], dtype=bool)
    said_syn = np.array([given[c][0] == "synthetic" for c in ids], dtype=bool)
    scores = np.array([given[c][1] * (1 if given[c][0] == "synthetic" else -1) for c in ids], dtype=np.float64)

    def share(num: int, den: int) -> float | None:
        return None if den == 0 else num / den
    area = auc(scores, is_syn)
    return {"kit": key["kit"], "cases": len(truth), "answered": len(ids),
            "real": int((~is_syn).sum()), "synthetic": int(is_syn.sum()),
            "accuracy": share(int((said_syn == is_syn).sum()), len(ids)),
            "sensitivity": share(int((said_syn & is_syn).sum()), int(is_syn.sum())),
            "specificity": share(int((~said_syn & ~is_syn).sum()), int((~is_syn).sum())),
            "auc": None if np.isnan(area) else area}
