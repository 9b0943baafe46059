"""Refusal and verification thresholds chosen on the answer benchmark, not on a handful of seed answers.

Reads bench/cache/answer-quality.json (bench/answer_quality.py, run with permissive thresholds:
RAG_MIN_RELEVANCE=0.78, RAG_VERIFY_THRESHOLD=0.80) and replays each newsrag (local) answer under stricter
pairs (RAG_MIN_RELEVANCE, RAG_VERIFY_THRESHOLD):
- refused when the question's best dense score is below RAG_MIN_RELEVANCE;
- a sentence is verified when its support reaches RAG_VERIFY_THRESHOLD and its fact checks found no problem;
- answered when at least one sentence is verified; correct when answered and an accepted string is in it.
It picks the pair that maximises correct-or-refused with wrong-but-verified <= 2%, and plots the curve.
(A replay, not a rerun: a stricter RAG_MIN_RELEVANCE would also drop weaker sources from the prompt.)

    python -m bench.calibrate
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.datasets import CACHE

SOURCE = CACHE / "answer-quality.json"
PLOT = Path(__file__).resolve().parent / "calibration.png"
RELEVANCE = [round(0.78 + 0.01 * i, 2) for i in range(11)]
SUPPORT = [round(0.80 + 0.01 * i, 2) for i in range(14)]
MAX_WRONG_VERIFIED = 0.02


def replay(rows: list[dict], min_relevance: float, verify_threshold: float) -> dict[str, float]:
    correct = refused_right = wrong_verified = answerable = unanswerable = 0
    for r in rows:
        verified = [c for c in r.get("checks", []) if c["support"] >= verify_threshold and not c["problems"]]
        answered = r["answered"] and r["top_dense"] >= min_relevance and (bool(verified) or r["provider"] != "local")
        ok = answered and r["correct"]
        if r["unanswerable"]:
            unanswerable += 1
            refused_right += not answered
        else:
            answerable += 1
            correct += ok
        wrong_verified += answered and not ok and bool(verified)
    n = len(rows)
    return {"min_relevance": min_relevance, "verify_threshold": verify_threshold,
            "correct": correct / max(answerable, 1), "unanswerable_refused": refused_right / max(unanswerable, 1),
            "wrong_but_verified": wrong_verified / max(n, 1), "correct_or_refused": (correct + refused_right) / n}


def main() -> dict:
    data = json.loads(SOURCE.read_text(encoding="utf-8"))
    rows = data["newsrag (local)"]["rows"]
    grid = [replay(rows, r, v) for r in RELEVANCE for v in SUPPORT]
    allowed = [g for g in grid if g["wrong_but_verified"] <= MAX_WRONG_VERIFIED]
    best = max(allowed or grid, key=lambda g: (g["correct_or_refused"], -g["wrong_but_verified"]))
    plot(grid, best)
    return {"best": best, "grid": grid, "met_constraint": bool(allowed)}


def plot(grid: list[dict], best: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in RELEVANCE[::2]:
        pts = [g for g in grid if g["min_relevance"] == r]
        ax.plot([g["wrong_but_verified"] for g in pts], [g["correct_or_refused"] for g in pts], marker=".",
                label=f"RAG_MIN_RELEVANCE={r}")
    ax.axvline(MAX_WRONG_VERIFIED, color="grey", linestyle="--", label="wrong-but-verified limit")
    ax.scatter([best["wrong_but_verified"]], [best["correct_or_refused"]], color="red", zorder=5,
               label=f"chosen: relevance {best['min_relevance']}, support {best['verify_threshold']}")
    ax.set_xlabel("wrong but verified (share of all questions)")
    ax.set_ylabel("correct or rightly refused")
    ax.set_title("newsrag (local 1.5B): thresholds replayed on the answer benchmark")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


if __name__ == "__main__":
    out = main()
    print(json.dumps(out["best"], indent=1), "constraint met:", out["met_constraint"])
    print(f"wrote {PLOT}")
