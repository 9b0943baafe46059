"""Citation verification: the answer's sentences (claims), whether their cited sentence supports them,
and the streaming filter that keeps unknown markers and the refusal signal from reaching the reader."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag import prompts
from rag.evidence import Source
from rag.text import NUMBER, lexical_overlap, split_sentences

MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")

# Support score of a claim against one source sentence:
#   cosine(claim, sentence)                      the multilingual embedder: same meaning, any language
#   + LEXICAL_WEIGHT * share of claim words in it names and terms the embedder blurs
#   - MISSING_NUMBER_PENALTY per claim number    a number the source does not state is the commonest
#     absent from the source's sentences           invented detail, and cosine hardly sees it
# A claim is supported when its score reaches RAG_VERIFY_THRESHOLD.
LEXICAL_WEIGHT = 0.15
MISSING_NUMBER_PENALTY = 0.15

def missing_numbers(claim: str, evidence: str) -> int:
    have = set(NUMBER.findall(evidence))
    return sum(1 for n in set(NUMBER.findall(claim)) if n not in have)


@dataclass
class Claim:
    text: str  # without markers
    cited: list[int]
    support: float = 0.0
    source: int | None = None  # final supporting source number (prompt numbering)
    sentence: tuple[int, int, str] | None = None


def split_claims(answer: str, valid: set[int]) -> list[Claim]:
    """Sentences of the answer with the source numbers cited after each (same splitter as chunking)."""
    claims: list[Claim] = []
    text = answer.strip()
    for start, end in split_sentences(text):
        raw = text[start:end]
        numbers = [int(x) for mm in MARKER.finditer(raw) for x in mm.group(1).split(",")]
        lead = re.match(r"^(\s*\[[\d,\s]+\][.!?]?)+", raw)
        if lead and claims:
            # "... 2024. [1]": the marker after the full stop belongs to the previous sentence
            lead_numbers = [int(x) for mm in MARKER.finditer(lead.group(0)) for x in mm.group(1).split(",")]
            claims[-1].cited += [n for n in lead_numbers if n in valid and n not in claims[-1].cited]
            numbers = numbers[len(lead_numbers):]
            raw = raw[lead.end():]
        body = MARKER.sub("", raw).strip()
        if not any(ch.isalpha() for ch in body):
            continue
        claims.append(Claim(text=body, cited=list(dict.fromkeys(n for n in numbers if n in valid))))
    return claims


def verify_claims(claims: list[Claim], sources: list[Source], embedder, threshold: float) -> None:
    if not claims or not sources:
        return
    all_sents = [(src.n, s) for src in sources for s in src.sentences]
    if not all_sents:
        return
    claim_vecs = embedder.embed_queries([c.text for c in claims])
    sent_vecs = embedder.embed_queries([s[2] for _, s in all_sents])
    sims = claim_vecs @ sent_vecs.T
    by_source: dict[int, str] = {src.n: " ".join(s[2] for s in src.sentences) for src in sources}
    for ci, claim in enumerate(claims):
        best: tuple[float, int, int] = (-1.0, 0, -1)  # (score, source n, index into all_sents)
        best_cited: tuple[float, int, int] = (-1.0, 0, -1)
        for j, (n, sent) in enumerate(all_sents):
            score = float(sims[ci, j]) + LEXICAL_WEIGHT * lexical_overlap(claim.text, sent[2])
            score -= MISSING_NUMBER_PENALTY * missing_numbers(claim.text, by_source[n])
            if score > best[0]:
                best = (score, n, j)
            if n in claim.cited and score > best_cited[0]:
                best_cited = (score, n, j)
        if best_cited[2] >= 0 and best_cited[0] >= threshold:
            chosen = best_cited
        elif best[2] >= 0 and best[0] >= threshold:
            chosen = best  # the model cited the wrong source or none: re-attach to the supporting one
        else:
            chosen = best_cited if best_cited[2] >= 0 else best
            claim.support = chosen[0]
            claim.source = None
            claim.sentence = all_sents[chosen[2]][1] if chosen[2] >= 0 else None
            continue
        claim.support, claim.source = chosen[0], chosen[1]
        claim.sentence = all_sents[chosen[2]][1]


# ------------------------------------------------------------------ streaming filter
class MarkerFilter:
    """Streams model text while holding back what must not reach the user:
    citation markers with unknown numbers and the NOT_IN_SOURCES signal."""

    def __init__(self, valid: set[int]) -> None:
        self.valid = valid
        self.buffer = ""
        self.started = False
        self.refused = False

    def feed(self, piece: str) -> str:
        self.buffer += piece
        if not self.started:
            probe = self.buffer.lstrip()
            if prompts.NOT_COVERED.startswith(probe[: len(prompts.NOT_COVERED)]) and len(probe) < len(prompts.NOT_COVERED):
                return ""
            if probe.startswith(prompts.NOT_COVERED):
                self.refused = True
            self.started = True
        if self.refused:
            return ""
        out = []
        while self.buffer:
            i = self.buffer.find("[")
            if i < 0:
                out.append(self.buffer)
                self.buffer = ""
                break
            out.append(self.buffer[:i])
            rest = self.buffer[i:]
            j = rest.find("]")
            if j < 0:
                if len(rest) > 16:  # not a marker after all
                    out.append(rest)
                    self.buffer = ""
                else:
                    self.buffer = rest
                break
            token = rest[: j + 1]
            m = re.fullmatch(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]", token)
            if m:
                keep = [x.strip() for x in m.group(1).split(",") if int(x) in self.valid]
                if keep:
                    out.append("[" + ", ".join(keep) + "]")
            else:
                out.append(token)
            self.buffer = rest[j + 1 :]
        return "".join(out)

    def flush(self) -> str:
        if self.refused:
            return ""
        out, self.buffer = self.buffer, ""
        return out if "[" not in out else MARKER.sub("", out)

