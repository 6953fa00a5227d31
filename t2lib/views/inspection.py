"""What scaling singular components does: experts that scale a band of σ, and their effect.

Notebook 01 uses these to show why SVF scales singular values: the top components carry most
of a matrix's function, the bottom ones little, so z has real but bounded leverage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tqdm.auto import tqdm

from t2lib.core.experts import Expert
from t2lib.core.svf import SVFModel


@dataclass(frozen=True)
class BandScaling:
    """Multiply the top or bottom `fraction` of every target's singular values by `factor`."""

    where: str      # "top" | "bottom"
    fraction: float  # share of the r singular values, in (0, 1]
    factor: float

    @property
    def label(self) -> str:
        return f"{self.where} {self.fraction:.0%} × {self.factor:g}"


# Pairs of equal-sized bands at the top and at the bottom of the spectrum, removed, halved or
# amplified. On SmolLM2-135M (MLP targets) the top bands move the model far more: removing the top
# 1% collapses it, removing the bottom 1% barely changes the reference likelihood.
DEFAULT_BANDS = (
    BandScaling("top", 0.01, 0.0), BandScaling("bottom", 0.01, 0.0),
    BandScaling("top", 0.10, 0.5), BandScaling("bottom", 0.10, 0.5),
    BandScaling("top", 0.10, 1.1), BandScaling("bottom", 0.10, 1.5),
)


@dataclass(frozen=True)
class Probe:
    """A question with a reference answer sentence and the words that make an answer right."""

    question: str
    reference: str
    keywords: tuple[str, ...]


DEFAULT_PROBES = (
    Probe("What is the capital of France?", "The capital of France is Paris.", ("Paris",)),
    Probe("What is 7 plus 5?", "7 plus 5 is 12.", ("12", "twelve")),
    Probe("Which planet is the largest in our solar system?", "Jupiter is the largest planet in our solar system.",
          ("Jupiter",)),
    Probe("How many legs does a spider have?", "A spider has 8 legs.", ("8", "eight")),
    Probe("What color is the sky on a clear day?", "The sky is blue on a clear day.", ("blue",)),
    Probe("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet.", ("Shakespeare",)),
)


def band_expert(svf: SVFModel, band: BandScaling) -> Expert:
    """Returns a "direct" expert with z = `band.factor` on the band and 1 elsewhere."""
    if band.where not in ("top", "bottom") or not 0 < band.fraction <= 1:
        raise ValueError(f"band {band} must have where 'top' or 'bottom' and 0 < fraction <= 1")
    expert = svf.new_expert(name=band.label)
    for name, z in expert.z.items():
        k = max(1, round(band.fraction * z.numel()))
        if band.where == "top":
            z[:k] = band.factor
        else:
            z[-k:] = band.factor
    return expert


def scaling_study(svf: SVFModel, backend, *, probes: Sequence[Probe] = DEFAULT_PROBES,
                  bands: Sequence[BandScaling] = DEFAULT_BANDS, max_new_tokens: int = 48,
                  progress: bool = True) -> list[dict]:
    """Returns one row per variant (base, then each band): answers and how good they are.

    Columns: variant, answers (greedy), correct (share of answers containing a keyword),
    same_as_base (share of answers identical to the base model's), ref_loglik (mean per-token
    log-likelihood of the reference answers).
    """
    from fishfarm.types import GenerationRequest, LogprobRequest, Prompt, SamplingParams

    sampling = SamplingParams(max_new_tokens=max_new_tokens)  # greedy
    requests = [GenerationRequest(Prompt.chat(p.question), sampling) for p in probes]
    references = [LogprobRequest(Prompt.chat(p.question), p.reference) for p in probes]
    rows: list[dict] = []
    variants = [("base", None)] + [(b.label, band_expert(svf, b)) for b in bands]
    for label, expert in tqdm(variants, desc="variants", disable=not progress):
        with svf.using(expert):
            answers = [r.text for r in backend.generate(requests, progress=False)]
            loglik = backend.logprobs(references).mean()
        correct = [any(k.lower() in a.lower() for k in p.keywords) for a, p in zip(answers, probes)]
        rows.append({"variant": label, "answers": answers, "correct": sum(correct) / len(probes),
                     "ref_loglik": float(loglik.mean())})
    base_answers = rows[0]["answers"]
    for row in rows:
        row["same_as_base"] = sum(a == b for a, b in zip(row["answers"], base_answers)) / len(probes)
    return rows
