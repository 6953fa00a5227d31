"""The LoRA baseline of the paper's Tables 1, 2 and 4: a PEFT LoRA adapter trained by the kit's trainer.

    lm = preset.load_model()                       # a model of its own: the adapter is injected into it
    lora = LoRAModel(lm.model, lm.tokenizer, LoRASettings(targets="attn"), model_id=lm.model_id)
    trainer = LoRATrainer(lora, task, config=ReinforceConfig(objective="next_token", ...), run_dir=...)
    adapter = trainer.train().expert               # a LoRAAdapter; adapter.save("experts/tiny/lora-math")

The paper's recipe (Table 6): rank 16, alpha 32, dropout 0.05, on the q and v projections, trained by
next-token prediction on the training task's reference solutions, its learning rate chosen on
validation from a sweep (2e-6 … 5e-4). `LoRATrainer` is `t2lib.reinforce.ReinforceTrainer` with
the LoRA weights as the trained parameters, so it has the same objectives ("next_token", and
"policy_gradient": REINFORCE on the adapter, Table 4), resume, best-by-validation and metrics.

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
from t2lib.experts import ExpertFileError, ExpertMismatchError, tensors_digest
from t2lib.fingerprint import fingerprint
from t2lib.reinforce import ReinforceConfig, ReinforceTrainer
from t2lib.svd import find_target_names, target_modules

LORA_FORMAT_VERSION = 1
WEIGHTS_FILE, CONFIG_FILE, META_FILE = "adapter_model.safetensors", "adapter_config.json", "lora.json"


@dataclass(frozen=True)
class LoRASettings:
    """The adapter's shape (paper: r 16, alpha 32, dropout 0.05 on q and v).

    Args:
        targets: a target set of `t2lib.svd.TARGET_SETS` ("attn": q and v; "mlp+attn"; "mlp").
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
        fix = "restore the folder, or train it again with `python -m t2lib.lora ...`"
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
        """Writes `adapter`'s weights into the injected layers.

        Raises:
            ExpertMismatchError: it was trained on other base weights, or has another shape.
        """
        if adapter.base_fingerprint != self.base_fingerprint:
            raise ExpertMismatchError(f"LoRA adapter '{adapter.name}' was trained on other base weights "
                                      f"({adapter.base_model}, fingerprint {adapter.base_fingerprint}); this model's "
                                      f"are {self.base_fingerprint}: load the base model it was trained on")
        mine = self.params()
        if set(adapter.weights) != set(mine) or any(adapter.weights[n].shape != p.shape for n, p in mine.items()):
            raise ExpertMismatchError(f"LoRA adapter '{adapter.name}' has other shapes or targets than this model's "
                                      f"adapter ({adapter.settings} here {self.settings})")
        self.write(adapter.weights)

    def write(self, weights: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in self.params().items():
                p.copy_(weights[n])

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


class LoRATrainer(ReinforceTrainer):
    """`ReinforceTrainer` over a LoRA adapter's weights (module docstring).

    Args:
        lora: the model with its adapter; rollouts, evaluation and gradients go through an HF
            backend over `lora.causal_lm` (built here unless given).
        Other arguments as `ReinforceTrainer` (`config.parameterization` and `init_noise` do not
        apply; `kl_coef` penalizes KL to the base model, the adapter switched off).
    """

    def __init__(self, lora: LoRAModel, task, *, config: ReinforceConfig, run_dir, validation=None,
                 name: str = "lora", progress: bool = True, backend=None, batch_size: int = 16):
        from fishfarm.backends import make_backend

        backend = backend or make_backend("hf", lora.causal_lm, lora.tokenizer, batch_size=batch_size,
                                          progress=False)
        self.lora, self.svf = lora, None
        self._setup(backend, task, config=config, run_dir=run_dir, validation=validation, name=name,
                    progress=progress, grad_backend=backend)
        self.model = lora.causal_lm
        self.z = lora.params()
        self._reset_adapter()
        self.targets = list(self.z)
        self._setup_optimizer()

    def _reset_adapter(self) -> None:
        """Starts from PEFT's initialization, drawn from the run's seed: A random, B zero (the base model)."""
        gen = torch.Generator().manual_seed(self.config.seed)
        with torch.no_grad():
            for n, p in self.z.items():
                if "lora_A" in n:
                    bound = (6 / p.shape[1]) ** 0.5 / (1 + 5) ** 0.5  # kaiming_uniform(a=√5), PEFT's default
                    p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=gen))
                else:
                    p.zero_()

    @property
    def base_fingerprint(self) -> str:
        return self.lora.base_fingerprint

    def _write_live(self, params) -> None:
        if params is not self.z:
            self.lora.write(params)

    def _write_base(self) -> None:
        """Nothing: the adapter stays live while training (the KL reference switches it off)."""

    def _grad_context(self):
        return self.lora.dropout()

    def _identity_params(self) -> dict[str, torch.Tensor]:
        return {n: torch.zeros_like(p) if "lora_B" in n else p.detach().clone() for n, p in self.z.items()}

    def _reference_distributions(self, chunk):
        with self.lora.disabled():
            return super()._reference_distributions(chunk)

    def evaluate(self, task, z, *, limit=None, progress=False) -> float:
        """Returns the accuracy on `task` with the adapter weights `z` (None: the base model)."""
        if z is None:
            with self.lora.disabled():
                return super().evaluate(task, self.z, limit=limit, progress=progress)
        current = {n: p.detach().clone() for n, p in self.z.items()}
        try:
            self._write_live(z)
            return super().evaluate(task, self.z, limit=limit, progress=progress)
        finally:
            self.lora.write(current)

    def result_from(self, params) -> LoRAAdapter:
        return LoRAAdapter({n: v.detach().cpu().clone() for n, v in params.items()}, self.lora.settings,
                           self.lora.model_id, self.lora.base_fingerprint, self.name,
                           config={"task": self.task.name, **asdict(self.config),
                                   "grad_dtype_resolved": self.autocast_dtype})


# The learning rates tried, the best kept on validation (the paper sweeps 2e-6 ... 5e-4).
LR_SWEEP = (2e-5, 1e-4, 5e-4)


def train_lora(preset, task: str, *, settings: LoRASettings = LoRASettings(), objective: str = "next_token",
               lrs=LR_SWEEP, steps: int | None = None, out: str | Path | None = None, fresh: bool = False,
               test: bool = True, progress: bool = True) -> dict:
    """Trains the LoRA baseline on a training task of the preset's suite, one run per learning rate
    (each resumable in build/lora/<preset>/<name>/lr<lr>), keeps the best on validation, scores it
    and the base model on the test split, and saves it; returns its Table 1 row.

    The runs use the preset's training settings with `objective` and the run's learning rate, and
    gradient-norm clipping at 1 (the SVF clip of 1e-3 is for z, not for LoRA's weights).
    """
    from dataclasses import replace

    from t2lib.paths import build_dir, experts_dir
    from t2lib.reinforce import evaluation_sampling
    from t2lib.train import expert_name, task_splits

    splits = task_splits(preset, task)
    category = expert_name(preset, task)
    name = f"lora-{category}"
    base_config = replace(preset.train_config(task), objective=objective, grad_clip=1.0, kl_coef=0.0,
                          grad_dtype=None, **({"steps": steps} if steps else {}))
    best = None
    for lr in lrs:
        config = replace(base_config, lr=lr)
        lm = preset.load_model()
        lora = LoRAModel(lm.model, lm.tokenizer, settings, model_id=preset.model)
        trainer = LoRATrainer(lora, splits.train, config=config, validation=splits.validation, name=name,
                              run_dir=build_dir() / "lora" / preset.name / name / f"lr{lr:g}", progress=progress,
                              batch_size=preset.batch_size)
        result = trainer.train(fresh=fresh)
        val = result.expert.metrics["val_accuracy"]
        if best is None or val > best[1].expert.metrics["val_accuracy"]:
            best = (trainer, result)
    trainer, result = best
    adapter = result.expert
    row = {"expert": name, "task": task, "best_step": result.best_step, "steps": trainer.config.steps,
           "kl_coef": 0.0, "lr": trainer.config.lr, "objective": objective, "num_params": adapter.num_params,
           "val_base_accuracy": adapter.metrics["val_base_accuracy"], "val_accuracy": adapter.metrics["val_accuracy"],
           "train_seconds": round(result.train_seconds, 1), "run_dir": str(trainer.run_dir)}
    if test:
        from t2lib.samples import spread_ids

        ids = spread_ids(splits.test.ids, preset.eval_limit)
        sampling = evaluation_sampling(trainer.config, splits.test)
        trainer.lora.load(adapter)
        correct = {}
        for label, context in (("base", trainer.lora.disabled()), ("expert", contextlib.nullcontext())):
            with context:
                done = splits.test.evaluate(trainer.backend, sample_ids=ids, sampling=sampling, progress=progress)
            correct[label] = [int(s.score.correct) for s in done.samples]
        base, tuned = (sum(correct[k]) / len(ids) for k in ("base", "expert"))
        row.update(n=len(ids), base_accuracy=round(base, 4), expert_accuracy=round(tuned, 4),
                   gain_points=round(100 * (tuned - base), 1), per_question={"ids": list(ids), **correct})
        adapter.metrics.update(test_accuracy=row["expert_accuracy"], test_base_accuracy=row["base_accuracy"],
                               test_n=row["n"])
    adapter.config = {"preset": preset.name, **adapter.config}
    row["path"] = str(adapter.save(out or experts_dir(preset.name) / name))
    return row


def score_unseen(preset, *, progress: bool = True) -> dict:
    """Table 2's "+LoRA" row: each category's LoRA adapter (experts/<preset>/lora-<category>) on its
    unseen task, scored on the same questions as `make adapt` (the test split minus the few-shot
    shots); returns {"rows", "per_question"} in `table2_adaptation`'s form (strategy "lora")."""
    import time

    from fishfarm.backends import make_backend
    from t2lib.paths import experts_dir
    from t2lib.samples import draw_shots, spread_ids

    folders = {c: experts_dir(preset.expert_set, create=False) / f"lora-{c}" for c in preset.suite_spec.unseen}
    missing = [c for c, f in folders.items() if not (f / META_FILE).exists()]
    if missing:
        raise FileNotFoundError(f"no LoRA adapter for {', '.join(missing)} in {experts_dir(preset.expert_set, create=False)}: "
                                f"train them with `python -m t2lib.lora --preset {preset.name} --task <training task>`")
    rows, per_question = [], {}
    for category, name in preset.suite_spec.unseen.items():
        adapter = LoRAAdapter.load(folders[category])
        lm = preset.load_model()
        lora = LoRAModel(lm.model, lm.tokenizer, adapter.settings, model_id=preset.model)
        lora.load(adapter)
        backend = make_backend("hf", lora.causal_lm, lm.tokenizer, batch_size=preset.batch_size,
                               max_batch_tokens=preset.max_batch_tokens, progress=progress)
        task = preset.task(name, "test")
        _, rest = draw_shots(task.ids, preset.cem.shots, seed=preset.cem.shot_seed(name))
        scored = spread_ids(rest, preset.eval_limit)
        started = time.perf_counter()
        done = task.evaluate(backend, sample_ids=scored)
        correct = [int(x.score.correct) for x in done.samples]
        rows.append({"task": name, "category": category, "strategy": "lora", "n": len(scored),
                     "accuracy": round(done.accuracy, 4), "first_pass_s": 0.0,
                     "second_pass_s": round(time.perf_counter() - started, 1)})
        per_question[name] = {"ids": list(scored), "lora": correct}
    return {"rows": rows, "per_question": per_question}


def main(argv=None) -> int:
    import argparse

    from t2lib.presets import add_preset_arguments, preset_from_args
    from t2lib.svd import TARGET_SETS
    from t2lib.train import write_table

    parser = argparse.ArgumentParser(description="Train the LoRA baseline (PEFT) on a training task (Table 1 +LoRA).")
    add_preset_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="a training task of the preset's suite, e.g. add_word, gsm8k")
    which.add_argument("--unseen", action="store_true",
                       help="no training: each category's adapter on its unseen task (Table 2 +LoRA, table2_lora.csv)")
    parser.add_argument("--objective", choices=("next_token", "policy_gradient"), default="next_token",
                        help="next-token prediction on reference solutions (the paper's LoRA) or REINFORCE")
    parser.add_argument("--lora-targets", choices=tuple(TARGET_SETS), default="attn",
                        help="matrices the adapter sits on (default attn: q and v, the paper's)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, nargs="+", default=list(LR_SWEEP),
                        help="learning rates to try; the best on validation is kept")
    parser.add_argument("--steps", type=int, help="updates per run (default: the preset's)")
    parser.add_argument("--out", help="adapter folder (default experts/<preset>/lora-<category>)")
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints of earlier runs")
    parser.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    args = parser.parse_args(argv)
    preset = preset_from_args(args)
    if preset.backend != "hf":
        parser.error("--backend: the LoRA baseline generates with its own HF model (vLLM would need the adapter); "
                     "use --backend hf")
    if args.unseen:
        import time

        from t2lib.adapt import COLUMNS
        from t2lib.atomic import atomic_write_csv
        from t2lib.paths import figures_dir
        from t2lib.runinfo import write_results

        started = time.time()
        try:
            result = score_unseen(preset)
        except FileNotFoundError as err:
            parser.error(str(err))
        folder = figures_dir(preset.name)
        atomic_write_csv(folder / "table2_lora.csv", result["rows"], COLUMNS)
        write_results(folder / "table2_lora.json", result, preset=preset, started=started)
        for r in result["rows"]:
            print(f"{r['task']:14s} lora n={r['n']} accuracy={r['accuracy']:.1%}", flush=True)
        return 0
    if args.task not in preset.suite_spec.training.values():
        parser.error(f"--task {args.task!r} is not a training task of the {preset.suite} suite; choose one of "
                     f"{', '.join(preset.suite_spec.training.values())}")
    settings = LoRASettings(r=args.rank, alpha=2 * args.rank, targets=args.lora_targets)
    row = train_lora(preset, args.task, settings=settings, objective=args.objective, lrs=args.lr, steps=args.steps,
                     out=args.out, fresh=args.fresh, test=not args.no_test)
    summary = (f"test {row['base_accuracy']:.1%} -> {row['expert_accuracy']:.1%}" if "base_accuracy" in row
               else f"validation {row['val_accuracy']:.1%}")
    print(f"{row['expert']} ({args.task}, lr {row['lr']:g}, {row['num_params']} parameters): {summary}, "
          f"trained in {row['train_seconds']:.0f} s -> {row['path']}", flush=True)
    if "base_accuracy" in row:
        print(f"wrote {write_table([row], preset, name='table1_lora')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
