"""Experts served as LoRA adapters: each expert (or mixture) exported once, reused by every call.

A backend that takes one adapter per request (`VLLMBackend` built with `enable_lora`) answers a
batch whose prompts go to different experts in one engine call. `ExpertAdapters` turns an expert
into the adapter folder that backend reads: `t2lib.core.export.export_lora` at the engine's rank,
written once into a scratch folder named by the expert's content digest (its z, parameterization
and the truncation), so the same expert, loaded twice or mixed again with the same α, is the same
folder and the same engine id. What each adapter truncates is logged once and kept (`report`).

SmolLM2-135M's MLP matrices have 576 singular values and vLLM serves at most rank 512, so there an
adapter is a truncation (the largest |σ(s − 1)| components, `t2lib.core.export`): the adapter path is
a setting, and applying the expert in place stays the default where it is exact.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from t2lib.core.experts import Expert, tensors_digest
from t2lib.core.export import PROVENANCE_FILE, export_lora
from t2lib.core.svd import Decomposition
from t2lib.paths import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedAdapter:
    """One expert's adapter as served: its folder and what the truncation keeps.

    Attributes:
        folder: the PEFT adapter folder.
        rank: the largest rank of any matrix (at most the engine's max_lora_rank).
        energy_kept: Σ kept δ² / Σ δ² over all target matrices (1.0: exact).
        energy_min: the least energy kept in any one matrix.
    """
    folder: Path
    rank: int
    energy_kept: float
    energy_min: float

    def summary(self) -> dict:
        """Returns the truncation as plain data for results files."""
        return {"rank": self.rank, "energy_kept": round(self.energy_kept, 6), "energy_min": round(self.energy_min, 6)}


class ExpertAdapters:
    """The adapter folders of the experts a backend serves per request.

    Args:
        decomp: the SVD of the base model the experts were trained on.
        rank: components kept per matrix (the engine's `max_lora_rank`).
        energy: instead of a fixed rank, the fraction of each matrix's ‖ΔW‖² to keep, capped at
            `rank` components (the engine serves no more).
        folder: where adapters are written (default: the kit's cache, adapters/<base fingerprint>/);
            one subfolder per expert, named by its digest.
    """

    def __init__(self, decomp: Decomposition, *, rank: int, energy: float | None = None,
                 folder: str | Path | None = None):
        if rank < 1:
            raise ValueError(f"rank={rank}: an adapter keeps at least one component per matrix")
        self.decomp, self.rank, self.energy = decomp, rank, energy
        self.folder = Path(folder) if folder else cache_dir() / "adapters" / decomp.base_fingerprint
        self.served: dict[str, ServedAdapter] = {}  # expert name -> its adapter, for the report

    def key(self, expert: Expert) -> str:
        """Returns the folder name of `expert`'s adapter: a digest of its z, parameterization, base
        weights and the truncation (the same expert gives the same name in any process)."""
        budget = json.dumps({"rank": self.rank, "energy": self.energy, "parameterization": expert.parameterization,
                             "base": expert.base_fingerprint, "z": tensors_digest(expert.stored_tensors())})
        return hashlib.sha256(budget.encode()).hexdigest()[:24]

    def folder_for(self, expert: Expert | None) -> Path | None:
        """Returns the adapter folder of `expert` (None: the base model, no adapter), exporting it
        the first time: into a temporary folder renamed into place, so a folder that exists is whole."""
        if expert is None:
            return None
        target = self.folder / self.key(expert)
        if not (target / PROVENANCE_FILE).is_file():
            self._export(expert, target)
        served = self._read(target)
        if expert.name not in self.served or self.served[expert.name] != served:
            log.info("expert %r served as a LoRA adapter of rank %d: %.4f of its change ‖ΔW‖² kept "
                     "(least in one matrix %.4f)", expert.name or "unnamed", served.rank, served.energy_kept,
                     served.energy_min)
        self.served[expert.name] = served
        return target

    def _export(self, expert: Expert, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            if self.energy is None:
                export_lora(expert, self.decomp, scratch, rank=self.rank)
            else:  # the fewest components reaching `energy`, but never more than the engine serves
                ranks = export_lora(expert, self.decomp, scratch, energy=self.energy).ranks
                if max(ranks.values()) > self.rank:
                    export_lora(expert, self.decomp, scratch, rank={n: min(k, self.rank) for n, k in ranks.items()})
            scratch.chmod(0o755)
            try:
                scratch.rename(target)
            except OSError:  # another process wrote the same adapter first: keep theirs
                if not (target / PROVENANCE_FILE).is_file():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def _read(folder: Path) -> ServedAdapter:
        provenance = json.loads((folder / PROVENANCE_FILE).read_text())
        return ServedAdapter(folder, int(provenance["rank"]), float(provenance["energy_kept"]),
                             float(min(provenance["energy"].values())))

    def report(self) -> dict[str, dict]:
        """Returns expert name -> its adapter's truncation (rank, energy kept) for results' run info."""
        return {name: served.summary() for name, served in self.served.items()}
