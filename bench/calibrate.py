"""Refusal and verification thresholds chosen on the answer benchmark, not on a handful of seed answers.

Reads bench/cache/answer-quality.json (bench/answer_quality.py with the model check on) and replays each
newsrag (local) answer under stricter pairs (RAG_MIN_RELEVANCE, RAG_VERIFY_THRESHOLD), from the pair the
run used (recorded in the file) upwards:
- refused when the question's best dense score is below RAG_MIN_RELEVANCE;
- a sentence is verified when its support reaches RAG_VERIFY_THRESHOLD and its fact checks found no problem;
- answered when at least one sentence is verified; correct when answered and an accepted string is in what
  the model wrote;
- once with the LLM's claim-check verdicts and once ignoring them (RAG_VERIFY_LLM off).
It picks the pair that maximises correct-or-refused with wrong-but-verified <= 2%, prints what each pick does
to every kind of question (a stricter relevance gate refuses cross-lingual questions first: their cosines
are lower), and plots the curve.
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
KIND_UNANSWERABLE = "unanswerable"
MAX_WRONG_VERIFIED = 0.02


def replay(rows: list[dict], min_relevance: float, verify_threshold: float,
           model_check: bool = True) -> dict[str, float]:
    """One threshold pair replayed on recorded answers. `model_check=False` ignores the LLM's claim-check
    verdicts (RAG_VERIFY_LLM off): what the deterministic checks alone would have marked."""
    correct = refused_right = wrong_verified = answerable = unanswerable = 0
    for r in rows:
        # a claim the model check flagged carries only that check's problem (rag.verify.confirm_claims)
        verified = [c for c in r.get("checks", []) if c["support"] >= verify_threshold
                    and (not c["problems"] or (not model_check and c.get("model_check") == "no"))]
        if r["provider"] == "local":
            answered = r["top_dense"] >= min_relevance and bool(verified)
            ok = answered and r.get("raw_correct", r["correct"])
        else:  # a fallback or refusal that did not come from the model: as recorded
            answered = r["answered"] and r["top_dense"] >= min_relevance
            ok = answered and r["correct"]
        if r["unanswerable"]:
            unanswerable += 1
            refused_right += not answered
        else:
            answerable += 1
            correct += ok
        wrong_verified += answered and not ok and bool(verified)
    n = len(rows)
    return {"min_relevance": min_relevance, "verify_threshold": verify_threshold, "model_check": model_check,
            "correct": correct / max(answerable, 1), "unanswerable_refused": refused_right / max(unanswerable, 1),
            "wrong_but_verified": wrong_verified / max(n, 1), "correct_or_refused": (correct + refused_right) / n}


def main() -> dict:
    data = json.loads(SOURCE.read_text(encoding="utf-8"))
    rows = data["newsrag (local)"]["rows"]
    used = data["newsrag (local)"].get("settings", {})  # looser pairs than the run's own cannot be replayed
    relevance = [r for r in RELEVANCE if r >= used.get("min_relevance", RELEVANCE[0])]
    support = [v for v in SUPPORT if v >= used.get("verify_threshold", SUPPORT[0])]
    out = {}
    for check in (True, False):
        grid = [replay(rows, r, v, check) for r in relevance for v in support]
        allowed = [g for g in grid if g["wrong_but_verified"] <= MAX_WRONG_VERIFIED]
        best = max(allowed or grid, key=lambda g: (g["correct_or_refused"], -g["wrong_but_verified"]))
        # where the constraint costs too much, the unconstrained best is reported next to it
        free = max(grid, key=lambda g: (g["correct_or_refused"], -g["wrong_but_verified"]))
        out["with model check" if check else "without model check"] = {
            "best": best, "unconstrained": free, "grid": grid, "met_constraint": bool(allowed),
            "by_kind": {name: by_kind(rows, pick["min_relevance"], pick["verify_threshold"], check)
                        for name, pick in (("within the limit", best), ("best overall", free))}}
    plot(out, relevance)
    return out


def by_kind(rows: list[dict], min_relevance: float, verify_threshold: float, check: bool) -> dict[str, float]:
    """Correct (answerable kinds) or rightly refused (unanswerable) per kind of question, for one pair."""
    out = {}
    for kind in sorted({r["kind"] for r in rows}):
        res = replay([r for r in rows if r["kind"] == kind], min_relevance, verify_threshold, check)
        out[kind] = round(res["unanswerable_refused"] if kind == KIND_UNANSWERABLE else res["correct"], 2)
    return out


def plot(curves: dict[str, dict], relevance: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(12, 4.5), sharey=True)
    for ax, (title, res) in zip(axes, curves.items(), strict=True):
        grid, best = res["grid"], res["best"]
        for r in relevance[::2]:
            pts = [g for g in grid if g["min_relevance"] == r]
            ax.plot([g["wrong_but_verified"] for g in pts], [g["correct_or_refused"] for g in pts], marker=".",
                    label=f"RAG_MIN_RELEVANCE={r}")
        ax.axvline(MAX_WRONG_VERIFIED, color="grey", linestyle="--", label="wrong-but-verified limit")
        ax.scatter([best["wrong_but_verified"]], [best["correct_or_refused"]], color="red", zorder=5,
                   label=f"best within the limit: relevance {best['min_relevance']}, support {best['verify_threshold']}")
        free = res["unconstrained"]
        ax.scatter([free["wrong_but_verified"]], [free["correct_or_refused"]], color="black", marker="*", s=80,
                   zorder=6, label=f"best overall: relevance {free['min_relevance']}, support {free['verify_threshold']}")
        ax.set_xlabel("wrong but verified (share of all questions)")
        ax.set_title(f"newsrag (local 1.5B), {title}", fontsize=9)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("correct or rightly refused")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


if __name__ == "__main__":
    for name, res in main().items():
        print(name, "| within the limit:", json.dumps(res["best"]), "constraint met:", res["met_constraint"])
        print(name, "| best overall:", json.dumps(res["unconstrained"]))
        for pick, kinds in res["by_kind"].items():
            print(name, "|", pick, "by kind:", json.dumps(kinds))
    print(f"wrote {PLOT}")
