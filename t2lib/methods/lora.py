"""The LoRA baseline of the paper's Tables 1, 2 and 4: a PEFT LoRA adapter trained by the kit's trainer.

    lm = preset.load_model()                       # a model of its own: the adapter is injected into it
    lora = LoRAModel(lm.model, lm.tokenizer, LoRASettings(targets="attn"), model_id=lm.model_id)
    trainer = ReinforceTrainer(LoRAParams(lora), lora.backend(), task,
                               config=ReinforceConfig(objective="next_token", ...), run_dir=...)
    adapter = trainer.train().expert               # a LoRAAdapter; adapter.save("experts/tiny/lora-math")

The paper's recipe (Table 6): rank 16, alpha 32, dropout 0.05, on the q and v projections, trained by
next-token prediction on the training task's reference solutions, its learning rate chosen on
validation from a sweep (2e-6 … 5e-4). `LoRAParams` is what `t2lib.methods.reinforce.ReinforceTrainer`
trains here (SVF's counterpart is `t2lib.methods.trainable.SVFParams`), so LoRA has the same objectives
("next_token", and "policy_gradient": REINFORCE on the adapter, Table 4), resume, best-by-validation
and metrics.

An adapter is saved as a PEFT adapter folder (adapter_config.json, adapter_model.safetensors: it
loads with `peft.PeftModel.from_pretrained`) plus `lora.json` with the kit's metadata (base model
and the fingerprint of the weights it adapts, settings, config, metrics, sha256 of the tensors);
loading it onto other base weights is refused, as for an SVF expert.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import safetensors.torch
import torch

from t2lib.atomic import atomic_path, atomic_write_json, atomic_write_text
from t2lib.core.experts import ExpertFileError, ExpertMismatchError, tensors_digest
from t2lib.core.fingerprint import fingerprint
from t2lib.core.svd import find_target_names, target_modules

LORA_FORMAT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE, META_FILE = "adapter_model.safetensors", "adapter_config.json", "lora.json"


@dataclass(frozen=True)
class LoRASettings:
    """The adapter's shape (paper: r 16, alpha 32, dropout 0.05 on q and v).

    Args:
        targets: a target set of `t2lib.core.svd.TARGET_SETS` ("attn": q and v; "mlp+attn"; "mlp").
    """
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: str = "attn"

    def __post_init__(self):
        target_modules(self.targets)  # an unknown set fails here, naming the known ones
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRASettings needs r >= 1, alpha > 0 and 0 <= dropout < 1; got {self}")

    def peft_config(self):
        from peft import LoraConfig

        modules = sorted({m.split(".")[-1] for m in target_modules(self.targets)})
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=modules,
                          bias="none", task_type="CAUSAL_LM")


@dataclass
class LoRAAdapter:
    """A trained adapter: its weights under PEFT's names, and what it was trained on."""
    weights: dict[str, torch.Tensor]
    settings: LoRASettings
    base_model: str
    base_fingerprint: str
    name: str = "lora"
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        return sum(t.numel() for t in self.weights.values())

    def metadata(self) -> dict:
        return {"format_version": LORA_FORMAT_VERSION, "name": self.name, "base_model": self.base_model,
                "base_fingerprint": self.base_fingerprint, "settings": asdict(self.settings),
                "num_params": self.num_params, "tensors_sha256": tensors_digest(self.weights),
                "config": self.config, "metrics": self.metrics}

    def save(self, folder: str | Path) -> Path:
        """Writes the PEFT adapter files and lora.json into `folder` atomically; returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"base_model.model.{k}": v.detach().cpu().contiguous() for k, v in sorted(self.weights.items())}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            tmp.write_bytes(safetensors.torch.save(tensors, metadata={"format": "pt"}))
        peft = self.settings.peft_config().to_dict()
        peft["base_model_name_or_path"] = self.base_model
        atomic_write_text(folder / CONFIG_FILE, json.dumps(peft, indent=2, sort_keys=True, default=list) + "\n")
        atomic_write_json(folder / META_FILE, self.metadata())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "LoRAAdapter":
        """Reads and verifies an adapter written by `save`.

        Raises:
            ExpertFileError: a file is missing or damaged, or the tensors do not match the recorded
                sha256, naming the file and the fix.
        """
        folder = Path(folder)
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        fix = "restore the folder, or train it again with `python -m t2lib lora ...`"
        for path in (meta_path, weights_path):
            if not path.exists():
                raise ExpertFileError(f"LoRA adapter {folder}: {path.name} is missing; {fix}")
        try:
            meta = json.loads(meta_path.read_text())
            tensors = safetensors.torch.load_file(weights_path)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a damaged file
            raise ExpertFileError(f"LoRA adapter {folder}: cannot read it ({type(exc).__name__}: {exc}); {fix}") from None
        weights = {k.removeprefix("base_model.model."): v for k, v in tensors.items()}
        if tensors_digest(weights) != meta.get("tensors_sha256"):
            raise ExpertFileError(f"LoRA adapter {folder}: its tensors do not match the sha256 in {META_FILE}; {fix}")
        return cls(weights, LoRASettings(**meta["settings"]), meta["base_model"], meta["base_fingerprint"],
                   meta.get("name", "lora"), meta.get("config", {}), meta.get("metrics", {}))


class LoRAModel:
    """A base model with a LoRA adapter injected by PEFT (the model is changed in place: give it a
    model of its own, not the one an `SVFModel` wraps).

    Attributes:
        causal_lm: the model with the adapter layers inside, for backends (`HFBackend(lora.causal_lm, ...)`).
        base_fingerprint: the fingerprint of the base weights the adapter adapts (taken before injection).
    """

    def __init__(self, model, tokenizer, settings: LoRASettings = LoRASettings(), *, model_id: str = ""):
        from peft import get_peft_model

        names = find_target_names(model, settings.targets)
        params = dict(model.named_parameters())
        self.base_fingerprint = fingerprint((n, params[n]) for n in names)
        self.settings, self.model_id, self.tokenizer = settings, model_id, tokenizer
        self.peft = get_peft_model(model, settings.peft_config())
        self.causal_lm = self.peft.base_model.model

    def params(self) -> dict[str, torch.nn.Parameter]:
        """Returns the adapter's trainable parameters under PEFT's state-dict names."""
        return {n.replace(".default", ""): p for n, p in self.causal_lm.named_parameters() if "lora_" in n}

    def load(self, adapter: LoRAAdapter) -> None:
        """Writes `adapter`'s weights into the injected layers (after `check`)."""
        self.check(adapter)
        self.write(adapter.weights)

    def check(self, adapter: LoRAAdapter) -> None:
        """Raises ExpertMismatchError unless `adapter` was trained on these base weights, with this
        adapter's shapes and targets."""
        if adapter.base_fingerprint != self.base_fingerprint:
            raise ExpertMismatchError(f"LoRA adapter '{adapter.name}' was trained on other base weights "
                                      f"({adapter.base_model}, fingerprint {adapter.base_fingerprint}); this model's "
                                      f"are {self.base_fingerprint}: load the base model it was trained on")
        mine = self.params()
        if set(adapter.weights) != set(mine) or any(adapter.weights[n].shape != p.shape for n, p in mine.items()):
            raise ExpertMismatchError(f"LoRA adapter '{adapter.name}' has other shapes or targets than this model's "
                                      f"adapter ({adapter.settings} here {self.settings})")

    def write(self, weights: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in self.params().items():
                p.copy_(weights[n])

    def backend(self, *, batch_size: int = 16, max_batch_tokens: int | None = None, progress: bool = False):
        """Returns an HF backend over the model with its adapter (vLLM would need the adapter's files)."""
        from fishfarm.backends import make_backend

        return make_backend("hf", self.causal_lm, self.tokenizer, batch_size=batch_size,
                            max_batch_tokens=max_batch_tokens, progress=progress)

    def disabled(self):
        """Returns a context in which the model answers as the base model."""
        return self.peft.disable_adapter()

    @contextlib.contextmanager
    def dropout(self):
        """Puts the adapter's dropout layers in training mode (the gradient passes)."""
        layers = [m for n, m in self.causal_lm.named_modules() if n.endswith("lora_dropout.default")]
        for m in layers:
            m.train()
        try:
            yield
        finally:
            for m in layers:
                m.eval()


class LoRAParams:
    """LoRA's trained tensors: the lora_A and lora_B matrices of `lora`'s adapter (`t2lib.methods.trainable.Trainable`).

    The adapter stays live while training; the base model (validation at step 0, the KL reference)
    is the adapter switched off. `config.parameterization` and `init_noise` do not apply.
    """

    def __init__(self, lora: "LoRAModel"):
        self.lora, self.model = lora, lora.causal_lm
        self.base_fingerprint = lora.base_fingerprint
        self.params: dict[str, torch.nn.Parameter] = lora.params()

    def start(self, config) -> dict[str, torch.nn.Parameter]:
        """Starts from PEFT's initialization, drawn from the run's seed: A random, B zero (the base model)."""
        gen = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for n, p in self.params.items():
                if "lora_A" in n:
                    bound = (6 / p.shape[1]) ** 0.5 / (1 + 5) ** 0.5  # kaiming_uniform(a=√5), PEFT's default
                    p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=gen))
                else:
                    p.zero_()
        return self.params

    @contextlib.contextmanager
    def answering(self, params: Mapping[str, torch.Tensor] | None):
        if params is None:
            with self.lora.disabled():
                yield
            return
        current = {n: p.detach().clone() for n, p in self.params.items()}
        try:
            self.write_live(params)
            yield
        finally:
            self.lora.write(current)

    def write_live(self, params: Mapping[str, torch.Tensor]) -> None:
        if params is not self.params:
            self.lora.write(params)

    def write_base(self) -> None:
        """Nothing: the adapter stays live while training (`reference_context` switches it off)."""

    def grad_context(self):
        return self.lora.dropout()

    def reference_context(self):
        return self.lora.disabled()

    def neutral(self) -> dict[str, torch.Tensor]:
        return {n: torch.zeros_like(p) if "lora_B" in n else p.detach().clone() for n, p in self.params.items()}

    def artifact(self, params: Mapping[str, torch.Tensor], *, name: str, config: dict) -> LoRAAdapter:
        return LoRAAdapter({n: v.detach().cpu().clone() for n, v in params.items()}, self.lora.settings,
                           self.lora.model_id, self.lora.base_fingerprint, name, config=config)

    def using(self, adapter: LoRAAdapter | None):
        if adapter is not None:
            self.lora.check(adapter)
        return self.answering(None if adapter is None else adapter.weights)
