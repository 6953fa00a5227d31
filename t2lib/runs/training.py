"""Table 1's steps: train an expert (SVF, or the LoRA baseline) on a training task, keep the best
of a sweep on validation, score it and the base model on the test split, and save it.

    session = Session(get_preset("tiny"))
    row = train_expert(session, "add_word")           # experts/tiny/math.safetensors + its Table 1 row
    row = train_lora(session.preset, "add_word")      # experts/tiny/lora-math/ (PEFT) + its row

Each run of a sweep (one per λ for SVF, one per learning rate for LoRA) resumes from its own
checkpoint folder under build/; the best on validation is kept (a tie keeps the earlier run).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from fishfarm.task import Task
from fishfarm.suites.from_file import suite_stamp
from t2lib.core.experts import Expert
from t2lib.locks import owning
from t2lib.methods.lora import LoRAAdapter, LoRAModel, LoRAParams, LoRASettings
from t2lib.methods.reinforce import ReinforceConfig, ReinforceTrainer, TrainResult, evaluation_sampling
from t2lib.methods.trainable import SVFParams
from t2lib.paths import build_dir, experts_dir
from t2lib.runs.scoring import base_and_expert
from t2lib.runs.tables import merge_table1
from t2lib.samples import spread_ids

# The learning rates the LoRA baseline tries, the best kept on validation (the paper sweeps 2e-6 ... 5e-4).
LORA_LR_SWEEP = (2e-5, 1e-4, 5e-4)


@dataclass
class Splits:
    """The three splits of a training task."""
    train: Task
    validation: Task
    test: Task


def task_splits(preset, task: str) -> Splits:
    """Returns the train / validation / test splits of a task the preset's suite trains on
    (a training task, or its classification task: training-task prompts labelled by category)."""
    suite = preset.suite_spec
    if task not in suite.trainable:
        raise ValueError(f"no expert is trained on {task!r} in the {suite.name} suite; choose one of "
                         f"{', '.join(suite.trainable)}")
    return Splits(*(preset.task(task, split) for split in ("train", "validation", "test")))


def keep_best(runs: Iterable[Callable[[], ReinforceTrainer]], *, fresh: bool = False
              ) -> tuple[ReinforceTrainer, TrainResult]:
    """Trains (or resumes) each run in turn, built by its callable when its turn comes (a LoRA run
    loads a model of its own); returns the (trainer, result) best on validation, the earlier on a tie."""
    best = None
    for make in runs:
        trainer = make()
        result = trainer.train(fresh=fresh)
        if best is None or result.expert.metrics["val_accuracy"] > best[1].expert.metrics["val_accuracy"]:
            best = (trainer, result)
    return best


def table1_row(trainer: ReinforceTrainer, result: TrainResult, *, task: str) -> dict:
    """Returns the training fields of a Table 1 row for the kept run of a sweep."""
    trained = result.expert
    return {"expert": trainer.name, "task": task, "best_step": result.best_step, "steps": trainer.config.steps,
            "kl_coef": trainer.config.kl_coef, "val_base_accuracy": trained.metrics["val_base_accuracy"],
            "val_accuracy": trained.metrics["val_accuracy"], "train_seconds": round(result.train_seconds, 1),
            "run_dir": str(trainer.run_dir)}


def score_test(trainer: ReinforceTrainer, test: Task, trained, *, limit: int | None, progress: bool = True) -> dict:
    """Scores the base model and the trained expert or adapter on a test split (greedy, as in
    validation); records the test accuracies in its metrics; returns the test fields of its Table 1 row."""
    ids = spread_ids(test.ids, limit)
    fields = base_and_expert(test, trainer.backend, ids, trainer.trained.using, trained,
                             sampling=evaluation_sampling(trainer.config, test), progress=progress)
    trained.metrics.update(test_accuracy=fields["expert_accuracy"], test_base_accuracy=fields["base_accuracy"],
                           test_n=fields["n"])
    return fields


def train_expert(session, task: str, *, config: ReinforceConfig | None = None,
                 kl_coefs: Sequence[float] | None = None, out: str | Path | None = None,
                 run_dir: str | Path | None = None, fresh: bool = False, test: bool = True,
                 progress: bool = True) -> dict:
    """Trains (or resumes) one SVF expert, saves it and returns its row of Table 1.

    Args:
        session: the loaded base model (`t2lib.session.Session`).
        task: a training task of the preset's suite, or "classification".
        config: training settings (default: the preset's for this task).
        kl_coefs: train once per λ and keep the best on validation (paper: {0, 0.1, 0.2, 0.3});
            default: the preset's `train_kl_sweep`, else `config.kl_coef`.
        out: expert path stem (default experts/<preset>/<category>).
        run_dir: checkpoint folder (default build/train/<preset>/<category>).
        fresh: ignore earlier checkpoints.
        test: evaluate the base model and the expert on the test split.
    """
    preset = session.preset
    config = config or preset.train_config(task)
    name = preset.suite_spec.expert_name(task)
    run_root = train_run_folder(preset, task, run_dir)
    with owning(run_root, what=f"training expert {name!r}"):  # the whole λ sweep is one run
        return _train_expert(session, task, config=config, kl_coefs=kl_coefs, out=out, run_root=run_root,
                             fresh=fresh, test=test, progress=progress)


def train_run_folder(preset, task: str, run_dir: str | Path | None = None) -> Path:
    """Returns the run folder of `train_expert` (given, else build/train/<preset>/<category>)."""
    return Path(run_dir) if run_dir else build_dir() / "train" / preset.folder / preset.suite_spec.expert_name(task)


def data_version(preset) -> dict | None:
    """Returns the version of a suite file's data that a training checkpoint must match to resume
    (the file's sha256 and its data files'; where the file lies does not count), None for a
    registered suite."""
    stamp = suite_stamp(preset.suite_spec)
    return {"sha256": stamp["sha256"], "data_sha256": stamp["data_sha256"]} if stamp else None


def _train_expert(session, task: str, *, config: ReinforceConfig, kl_coefs, out, run_root: Path, fresh: bool,
                  test: bool, progress: bool) -> dict:
    """`train_expert`'s work, with its run folder held."""
    preset = session.preset
    name = preset.suite_spec.expert_name(task)
    splits = task_splits(preset, task)
    kl_coefs = list(kl_coefs or preset.train_kl_sweep or [config.kl_coef])

    def run(kl: float) -> Callable[[], ReinforceTrainer]:
        folder = run_root / f"kl{kl:g}" if len(kl_coefs) > 1 else run_root
        return lambda: ReinforceTrainer(SVFParams(session.svf), session.backend, splits.train,
                                        config=replace(config, kl_coef=kl), run_dir=folder,
                                        validation=splits.validation, name=name, progress=progress,
                                        grad_backend=session.grad_backend, data_version=data_version(preset))

    trainer, result = keep_best([run(kl) for kl in kl_coefs], fresh=fresh)
    expert = result.expert
    row = table1_row(trainer, result, task=task)
    expert.config = {"preset": preset.name, **expert.config, "task": task}
    if preset.suite_spec.source:  # a suite file's experts are refused for another version of it
        expert.config["suite_file"] = suite_stamp(preset.suite_spec)
    if test:
        row.update(score_test(trainer, splits.test, expert, limit=preset.eval_limit, progress=progress))
    row["path"] = str(expert.save(out or experts_dir(preset.folder) / name))
    return row


def train_lora(preset, task: str, *, settings: LoRASettings = LoRASettings(), objective: str = "next_token",
               lrs: Sequence[float] = LORA_LR_SWEEP, steps: int | None = None, out: str | Path | None = None,
               fresh: bool = False, test: bool = True, progress: bool = True) -> dict:
    """Trains the LoRA baseline on a training task of the preset's suite, one run per learning rate
    (each resumable in build/lora/<preset>/<name>/lr<lr>), keeps the best on validation, scores it
    and the base model on the test split, and saves it; returns its Table 1 row.

    The runs use the preset's training settings with `objective` and the run's learning rate, and
    gradient-norm clipping at 1 (the SVF clip of 1e-3 is for z, not for LoRA's weights).
    """
    name = f"lora-{preset.suite_spec.expert_name(task)}"
    with owning(lora_run_folder(preset, task), what=f"training LoRA {name!r}"):  # the whole lr sweep
        return _train_lora(preset, task, settings=settings, objective=objective, lrs=lrs, steps=steps, out=out,
                           fresh=fresh, test=test, progress=progress)


def lora_run_folder(preset, task: str) -> Path:
    """Returns the run folder of `train_lora` (build/lora/<preset>/lora-<category>)."""
    return build_dir() / "lora" / preset.folder / f"lora-{preset.suite_spec.expert_name(task)}"


def _train_lora(preset, task: str, *, settings: LoRASettings, objective: str, lrs: Sequence[float],
                steps: int | None, out, fresh: bool, test: bool, progress: bool) -> dict:
    """`train_lora`'s work, with its run folder held."""
    splits = task_splits(preset, task)
    name = f"lora-{preset.suite_spec.expert_name(task)}"
    base_config = replace(preset.train_config(task), objective=objective, grad_clip=1.0, kl_coef=0.0,
                          grad_dtype=None, **({"steps": steps} if steps else {}))

    def run(lr: float) -> Callable[[], ReinforceTrainer]:
        def make() -> ReinforceTrainer:
            lora = lora_model(preset, settings)
            return ReinforceTrainer(LoRAParams(lora), lora.backend(batch_size=preset.batch_size), splits.train,
                                    config=replace(base_config, lr=lr), validation=splits.validation, name=name,
                                    run_dir=lora_run_folder(preset, task) / f"lr{lr:g}",
                                    progress=progress, data_version=data_version(preset))
        return make

    trainer, result = keep_best([run(lr) for lr in lrs], fresh=fresh)
    adapter = result.expert
    row = {**table1_row(trainer, result, task=task), "lr": trainer.config.lr, "objective": objective,
           "num_params": adapter.num_params}
    if test:
        row.update(score_test(trainer, splits.test, adapter, limit=preset.eval_limit, progress=progress))
    adapter.config = {"preset": preset.name, **adapter.config}
    row["path"] = str(adapter.save(out or experts_dir(preset.folder) / name))
    return row


def lora_model(preset, settings: LoRASettings) -> LoRAModel:
    """Returns the preset's base model, loaded anew, with a LoRA adapter injected (PEFT changes the
    model in place, so it never shares the model a `Session` wraps)."""
    lm = preset.load_model()
    return LoRAModel(lm.model, lm.tokenizer, settings, model_id=preset.model)


def rescore_expert(session, task: str, *, path: str | Path | None = None, progress: bool = True) -> dict:
    """Scores a trained expert file on the test split again, without training; returns its
    Table 1 row (training fields from the expert's JSON) with "recorded": the test accuracies
    its JSON holds, to compare (`compare_recorded`)."""
    preset = session.preset
    name = preset.suite_spec.expert_name(task)
    path = Path(path) if path else experts_dir(preset.folder) / name
    if not path.with_suffix(".safetensors").exists():
        raise FileNotFoundError(f"no expert at {path}.safetensors: train it with "
                                f"`python -m t2lib train {preset.cli_options} --task {task}`")
    expert = Expert.load(path)
    m, c = expert.metrics, expert.config
    config = preset.train_config(task)
    config = replace(config, max_new_tokens=c.get("max_new_tokens", config.max_new_tokens))
    test = task_splits(preset, task).test
    recorded = {"base_accuracy": m.get("test_base_accuracy"), "expert_accuracy": m.get("test_accuracy")}
    scores = base_and_expert(test, session.backend, spread_ids(test.ids, preset.eval_limit), session.svf.using,
                             expert, sampling=evaluation_sampling(config, test), progress=progress)
    return {"expert": name, "task": task, "best_step": m.get("best_step"), "steps": m.get("steps"),
            "kl_coef": c.get("kl_coef"), "val_base_accuracy": m.get("val_base_accuracy"),
            "val_accuracy": m.get("val_accuracy"), "train_seconds": m.get("train_seconds"),
            **scores, "path": str(path), "recorded": recorded}


def compare_recorded(row: dict) -> str:
    """Returns how a `rescore_expert` row's test accuracies compare with those the expert's JSON
    records: "the same", "DIFFERENT (...)", or "not recorded"."""
    rec = row["recorded"]
    if rec["base_accuracy"] is None or rec["expert_accuracy"] is None:
        return "not recorded"
    same = all(abs(rec[k] - row[k]) < 1e-4 for k in ("base_accuracy", "expert_accuracy"))
    return "the same" if same else (f"DIFFERENT (recorded {rec['base_accuracy']:.1%} -> "
                                    f"{rec['expert_accuracy']:.1%})")


def learning_curves(preset) -> list[dict]:
    """The paper's training curves at the preset's scale: for each category's training task, the
    validation accuracy at each evaluation of the SVF expert's run and of the LoRA adapter's (Table
    1's, `train_lora`), from the metrics each one keeps (loaded and verified), with the
    base model's validation accuracy. Rows: {category, task, method ("svf" | "lora"), name, base,
    steps, accuracy (per evaluation), best_step}; a method with no trained file is left out."""
    folder = experts_dir(preset.expert_set, create=False)
    rows = []
    for category, task in preset.suite_spec.training.items():
        for method, path, load in (("svf", folder / f"{category}.safetensors", Expert.load),
                                   ("lora", folder / f"lora-{category}", LoRAAdapter.load)):
            if not path.exists():
                continue
            trained = load(path)
            evals = trained.metrics.get("evals") or []
            if not evals:
                raise ValueError(f"{path} keeps no validation curve (metrics['evals']): retrain it with this kit")
            rows.append({"category": category, "task": task, "method": method, "name": trained.name,
                         "base": trained.metrics["val_base_accuracy"], "best_step": trained.metrics.get("best_step"),
                         "steps": [e["step"] for e in evals], "accuracy": [e["accuracy"] for e in evals]})
    return rows


def train_experts(session, tasks: Sequence[str], *, overrides: dict | None = None, **options) -> Iterator[dict]:
    """Trains (or resumes) the experts of `tasks` one after the other with the preset's settings
    (with `overrides`); yields each one's Table 1 row once it is saved and, when it was tested,
    merged into table1_svf_vs_base (so an interrupted run keeps the rows it finished).
    `options` go to `train_expert`."""
    for task in tasks:
        config = replace(session.preset.train_config(task), **(overrides or {}))
        row = train_expert(session, task, config=config, **options)
        if "base_accuracy" in row:
            row["table"] = str(merge_table1([row], session.preset))
        yield row


def describe(row: dict) -> str:
    """Returns one line on a trained expert's Table 1 row: its test (or validation) accuracy, best
    step, time and file."""
    summary = (f"test {row['base_accuracy']:.1%} -> {row['expert_accuracy']:.1%}" if "base_accuracy" in row
               else f"validation {row['val_accuracy']:.1%}")
    return (f"{row['expert']} ({row['task']}): {summary}, best step {row['best_step']}, "
            f"trained in {row['train_seconds']:.0f} s -> {row['path']}")
