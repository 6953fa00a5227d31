"""Few-shot adaptation (paper §3.2): search the mixing weights α of the experts with CEM.

On k labelled examples ("shots") of a new task, the cross-entropy method samples a population of
α, mixes the experts into z' = Σ α_k z_k for each, answers the shots with z' applied, and refits a
Gaussian to the elite fraction. A candidate's fitness is its accuracy on the shots; ties are broken
by the mean per-token log-likelihood of its correct answers (as in the official code). The best
candidate seen is returned. Nothing here looks at the task's test answers: shots come from the
caller, who scores the result on the test split minus the shots.

How the experts are mixed (in z or in scale space, one α per expert, layer or matrix): `t2lib.core.mixing`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from fishfarm.task import Task
from fishfarm.types import LogprobRequest
from t2lib.core.experts import Expert
from t2lib.core.mixing import MIX_SPACES, mix, target_order
from t2lib.core.svd import parse_target
from t2lib.core.svf import SVFModel


# The official few-shot script's seeds for drawing the shots of each unseen task (paper Table 2).
OFFICIAL_SHOT_SEEDS = (("math", 27), ("humaneval", 16), ("arc_challenge", 38))


@dataclass(frozen=True)
class CEMConfig:
    """Settings of the few-shot search over α.

    Args:
        shots: labelled examples of the new task (paper: 10).
        population: candidates per iteration (official: 32).
        elite_ratio: share of the population the Gaussian is refitted to (official: 0.2).
        iterations: CEM iterations (paper: at most 100; official script: 50).
        per_layer: one α per expert per layer instead of one per expert.
        per_matrix: one α per expert per target matrix (the official script: its
            `WeightedCombination(per_layer=True)` keeps one weight per adapted parameter tensor);
            takes precedence over `per_layer`.
        mix_space: "z" (mix the stored vectors, the paper's z' = Σ α_k z_k and the official code's)
            or "scale" (mix the scales they apply to σ; module docstring).
        init_std: standard deviation of the first population around the uniform mixture 1/K.
        bounds: α is clipped to this interval (official: [0, 1]).
        min_std: floor on the standard deviation (keeps the search from collapsing at once).
        include_base: the first population also holds α = 0, the base model ("direct" experts,
            where the mixture is taken around the base): a mixture is kept only if it does better
            on the shots than no adaptation at all.
        seed: drives the sampling, and the draw of the shots from each task.
        shot_seeds: (task, seed) pairs that replace `seed` for drawing that task's shots; the
            official few-shot script draws them with its own seed per task (`OFFICIAL_SHOT_SEEDS`).
    """
    shots: int = 10
    population: int = 32
    elite_ratio: float = 0.2
    iterations: int = 50
    per_layer: bool = True
    per_matrix: bool = False
    mix_space: str = "z"
    init_std: float = 0.3
    bounds: tuple[float, float] = (0.0, 1.0)
    min_std: float = 0.02
    include_base: bool = True
    seed: int = 0
    shot_seeds: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if self.population < 2 or self.iterations < 1 or self.shots < 1:
            raise ValueError("CEMConfig needs population >= 2, iterations >= 1 and shots >= 1")
        if not 0 < self.elite_ratio <= 1:
            raise ValueError(f"CEMConfig.elite_ratio must be in (0, 1], got {self.elite_ratio}")
        if self.mix_space not in MIX_SPACES:
            raise ValueError(f"CEMConfig.mix_space must be one of {', '.join(MIX_SPACES)}; got {self.mix_space!r}")
        low, high = self.bounds
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"CEMConfig.bounds must be two finite numbers, low < high; got {self.bounds}")

    def shot_seed(self, task: str) -> int:
        """Returns the seed that draws `task`'s shots."""
        return dict(self.shot_seeds).get(task, self.seed)

    @property
    def num_elites(self) -> int:
        return max(1, math.ceil(self.population * self.elite_ratio))


@dataclass
class CEMResult:
    """The outcome of a search.

    Args:
        alpha: the best mixing weights, shape [K], [K, L] or [K, M] (`CEMSearch.shape`).
        expert: the experts mixed with `alpha`.
        accuracy: its accuracy on the shots.
        loglik: the mean log-likelihood of its correct answers (−inf when none is correct).
        history: per iteration: best / mean accuracy of the population, std of the Gaussian.
        evaluations: candidates evaluated; seconds: wall time.
    """
    alpha: torch.Tensor
    expert: Expert
    accuracy: float
    loglik: float
    history: list[dict] = field(default_factory=list)
    evaluations: int = 0
    seconds: float = 0.0


class CEMSearch:
    """Searches α on the shots of one task.

    Args:
        svf: the base model wrapped for SVF.
        backend: generates with the live model.
        experts: the K experts to mix (same base model, targets and parameterization).
        config: the search settings.
        progress: show a progress bar over iterations.
    """

    def __init__(self, svf: SVFModel, backend, experts: Sequence[Expert], *, config: CEMConfig = CEMConfig(),
                 progress: bool = True):
        if len(experts) < 1:
            raise ValueError("CEM needs at least one expert to mix")
        self.svf, self.backend, self.experts, self.config = svf, backend, list(experts), config
        self.progress = progress
        self.num_layers = max(parse_target(n)[0] for n in experts[0].z) + 1
        self.num_matrices = len(target_order(experts[0].z))

    @property
    def shape(self) -> tuple[int, ...]:
        k = len(self.experts)
        if self.config.per_matrix:
            return (k, self.num_matrices)
        return (k, self.num_layers) if self.config.per_layer else (k,)

    def mixture(self, alpha: torch.Tensor, *, name: str = "few-shot") -> Expert:
        """Returns the experts mixed with `alpha` in the configured space."""
        return mix(self.experts, alpha, name=name, space=self.config.mix_space, decomp=self.svf.decomp)

    def fitness(self, task: Task, shot_ids: Sequence[str], alpha: torch.Tensor) -> tuple[float, float]:
        """Returns (accuracy on the shots, mean log-likelihood of the correct answers) with α applied."""
        with self.svf.using(self.mixture(alpha)):
            result = task.evaluate(self.backend, sample_ids=shot_ids, progress=False)
            correct = [s for s in result.samples if s.score.correct]
            if not correct:
                return result.accuracy, float("-inf")
            requests = [LogprobRequest(task.request(s.sample_id).prompt, s.answer) for s in correct]
            return result.accuracy, float(self.backend.logprobs(requests).mean().mean())

    def search(self, task: Task, shot_ids: Sequence[str]) -> CEMResult:
        """Returns the best α found on `shot_ids` of `task` (the shots only: never the test split)."""
        c = self.config
        started = time.perf_counter()
        gen = torch.Generator().manual_seed(c.seed)
        mean = torch.full(self.shape, 1.0 / len(self.experts))
        std = torch.full(self.shape, c.init_std)
        best: tuple[float, float, torch.Tensor] | None = None
        history, evaluations = [], 0
        bar = tqdm(range(c.iterations), desc=f"CEM {task.name}", unit="iter", disable=not self.progress)
        for it in bar:
            samples = (mean + std * torch.randn((c.population, *self.shape), generator=gen)).clamp(*c.bounds)
            if it == 0:
                samples[0] = mean  # the uniform mixture is always among the candidates
                if c.include_base and (self.experts[0].parameterization == "direct" or c.mix_space == "scale") and len(samples) > 2:
                    samples[1] = 0.0  # and so is the base model
            elif best is not None:
                samples[0] = best[2]  # re-evaluated by construction: its score is cached below
            scored = []
            for alpha in samples:
                if best is not None and torch.equal(alpha, best[2]):
                    acc, ll = best[0], best[1]
                else:
                    acc, ll = self.fitness(task, shot_ids, alpha)
                    evaluations += 1
                scored.append((acc, ll, alpha))
            scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
            if best is None or (scored[0][0], scored[0][1]) > (best[0], best[1]):
                best = scored[0]
            elites = torch.stack([s[2] for s in scored[:c.num_elites]])
            mean = elites.mean(0)
            std = elites.std(0, unbiased=False).clamp(min=c.min_std) if len(elites) > 1 else std
            history.append({"iteration": it, "best_accuracy": scored[0][0],
                            "mean_accuracy": sum(s[0] for s in scored) / len(scored),
                            "std": float(std.mean())})
            bar.set_postfix(best=f"{best[0]:.0%}")
        acc, ll, alpha = best
        return CEMResult(alpha=alpha, expert=self.mixture(alpha), accuracy=acc, loglik=ll,
                         history=history, evaluations=evaluations, seconds=time.perf_counter() - started)
