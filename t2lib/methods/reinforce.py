"""Training one SVF expert with REINFORCE (paper §3.1): z learns from a task's correctness reward.

One step:
1. compose W' = U diag(σ ⊙ z) Vᵀ once (no graph) and copy it into the live model;
2. roll out the batch through the backend (greedy, as in the paper) and score the answers;
3. rewards r = ±1, optionally normalized within the batch (advantages);
4. log-probs of the answers in micro-batches of similar length, with the base weights back in
   place and each target layer computing U((σ ⊙ z) ⊙ Vᵀx) from the factors, so autograd reaches
   z directly (no dL/dW', no weight-gradient products); optionally a KL penalty to the base model;
5. clip, Adam(W) step.

With `objective="next_token"` a step is supervised instead: the loss is the negative log-likelihood
of the task's reference answers (`Task.reference_answer`) followed by the end of the turn (EOS),
teacher-forced, through the same
factored pass (paper Table 4, "next-token prediction"). What is trained is a `Trainable`
(`t2lib.methods.trainable`): `SVFParams` trains an SVF expert, `t2lib.methods.lora.LoRAParams` a
LoRA adapter, with the same loop, checkpoints, validation and metrics.

The official code instead computes log-probs one sample at a time over the whole vocabulary and
backpropagates through the composed W'; `bench/train_step.py` measures the difference.

Every step is checkpointed atomically (z, optimizer and schedule state, best-by-validation z,
evaluations), so an interrupted run resumes where it stopped and ends with the same expert as an
uninterrupted one. Metrics go to `metrics.jsonl` in the run folder.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from fishfarm.task import Task
from fishfarm.types import LogprobRequest, SamplingParams
from t2lib.atomic import append_jsonl, atomic_path, atomic_write_text
from t2lib.locks import owning
from t2lib.core.experts import PARAMETERIZATIONS
from t2lib.hardware import resolve_grad_dtype
from t2lib.samples import batch_ids, spread_ids
from t2lib.methods.trainable import Trainable

CHECKPOINT_VERSION = 1
OBJECTIVES = ("policy_gradient", "next_token")


@dataclass(frozen=True)
class ReinforceConfig:
    """Settings for training one SVF expert with REINFORCE.

    Args:
        steps: number of updates of z.
        batch_size: prompts per update (paper Table 6: 256).
        micro_batch_size: answers per forward/backward pass (memory, not maths: the gradient is
            the same for any value).
        lr: learning rate of z (paper: 2e-3).
        optimizer: "adamw" (paper) | "adam" (official code).
        weight_decay: AdamW's decay of z (pulls z toward 0, i.e. shrinks σ; 0 by default).
        schedule: "cosine" (paper: cosine decay to 0 over `steps`) | "constant" (official code).
        grad_clip: maximum global norm of the gradient of z (paper: 1e-3); None: no clipping.
        kl_coef: λ, weight of KL(π_W' ‖ π_W) at the answers' positions, reduced like the
            log-probs (paper: swept over {0, 0.1, 0.2, 0.3}; official default 0). The official
            code computes the reverse direction, KL(π_W ‖ π_W').
        normalize_rewards: subtract the batch mean and divide by its std (paper: raw ±1).
        reward_correct: reward of a correct answer (paper: +1).
        reward_wrong: reward of a wrong answer (paper: −1).
        logprob_reduction: an answer's log-probability as the "sum" of its tokens' (paper: log π(ŷ|x))
            or their "mean" (long answers then weigh no more than short ones).
        temperature: rollout temperature (paper: 0, greedy).
        max_new_tokens: rollout answer budget; None uses the task's.
        grad_dtype: run the log-prob passes under torch.autocast to this dtype ("bfloat16"), with
            fp32 weights and z; None: the model's dtype; "auto": bfloat16 where the device computes
            it natively (`native_bf16`), else the model's dtype. On a CPU with AVX512-BF16 bf16
            halves the update's time; on one without, it emulates bf16 and is 3.5x slower than
            fp32 (bench/train_step.py). Rollouts and evaluation stay in the model's dtype.
        grad_attention: attention implementation for the log-prob passes ("eager", "sdpa", ...);
            None: the model's. On a CPU, "eager" backpropagates faster than SDPA for short sequences.
        parameterization: "direct" (paper's formula, z = 1 is the base) | "sigmoid" (official
            code; z = 0.1 is the base, paper Table 6's "initial mean 0.1").
        init_noise: std of Gaussian noise added to the initial z (official code: 0.01).
        eval_every: evaluate on validation every this many steps (paper: 10); also at step 0 and
            at the last step.
        eval_limit: validation samples per evaluation (None: the whole split).
        seed: drives the batch order, rollout sampling and the initial noise.
        objective: "policy_gradient" (REINFORCE on the correctness reward, the paper's) or
            "next_token" (the negative log-likelihood of the task's reference answers).
    """

    steps: int = 200
    batch_size: int = 256
    micro_batch_size: int = 8
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    grad_clip: float | None = 1e-3
    kl_coef: float = 0.0
    normalize_rewards: bool = False
    reward_correct: float = 1.0
    reward_wrong: float = -1.0
    logprob_reduction: str = "sum"
    temperature: float = 0.0
    max_new_tokens: int | None = None
    grad_dtype: str | None = None
    grad_attention: str | None = None
    parameterization: str = "direct"
    init_noise: float = 0.0
    eval_every: int = 10
    eval_limit: int | None = None
    seed: int = 42
    objective: str = "policy_gradient"

    def __post_init__(self):
        choices = {"optimizer": ("adamw", "adam"), "schedule": ("cosine", "constant"), "objective": OBJECTIVES,
                   "logprob_reduction": ("mean", "sum"), "parameterization": PARAMETERIZATIONS,
                   "grad_dtype": (None, "auto", "bfloat16", "float16")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"ReinforceConfig.{key}={getattr(self, key)!r}; choose one of {allowed}")
        for key in ("steps", "batch_size", "micro_batch_size", "eval_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"ReinforceConfig.{key} must be at least 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ValueError(f"ReinforceConfig.lr must be positive, got {self.lr}")


@dataclass
class TrainResult:
    """What `ReinforceTrainer.train` returns.

    Args:
        expert: what the best-by-validation params make (an `Expert`, or a `LoRAAdapter`), metrics filled in.
        best_step: the step it comes from (0: no step beat the base model on validation).
        history: one dict per step (the rows of metrics.jsonl).
        evals: one dict per validation evaluation: step, accuracy.
        train_seconds: time spent in steps and validation, over all sessions of a resumed run.
    """
    expert: object
    best_step: int
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Returns the rows of a run's metrics.jsonl: step 0 holds the base model's validation
    accuracy, later rows one update each (with "val_accuracy" at evaluation steps)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def evaluation_sampling(config: ReinforceConfig, task: Task) -> SamplingParams:
    """Returns the decoding settings of validation and test evaluations: greedy, the run's answer
    budget (else the task's), the task's stop strings."""
    return SamplingParams(max_new_tokens=config.max_new_tokens or task.sampling.max_new_tokens,
                          stop=task.sampling.stop)


def advantages(rewards: torch.Tensor, *, normalize: bool) -> torch.Tensor:
    """Returns the weights of the answers' log-probs: raw rewards, or normalized within the batch.

    A batch whose rewards are all equal has zero advantages when normalized (nothing to learn).
    """
    if not normalize:
        return rewards
    std = rewards.std(unbiased=False)
    if std < 1e-8:
        return torch.zeros_like(rewards)
    return (rewards - rewards.mean()) / std


class ReinforceTrainer:
    """Trains one method's parameters (an SVF expert, a LoRA adapter) on one task; resumable from its run folder.

    Args:
        trained: what is trained (`SVFParams(svf)`, `LoRAParams(lora)`); its live weights change
            during training and are restored at the end.
        backend: generates rollouts and scores validation on `trained.model` (HF, or vLLM synced
            through the `SVFModel`).
        task: the training task (its train split).
        config: the REINFORCE settings.
        run_dir: where the checkpoint and metrics.jsonl go.
        validation: the task's validation split (best expert chosen on it); None: the last step.
        name: the expert's name ("math", "code", ...).
        progress: show a tqdm bar over steps.
        grad_backend: computes the differentiable log-probs of the update and the KL reference
            on `trained.model` (default: `backend`); it must read the model's live tensors (HF), so a
            vLLM `backend` comes with an HF `grad_backend` (`t2lib.session.Session.grad_backend`).
        data_version: the version of the data `task` comes from (a suite file's sha256 and its data
            files'), which a checkpoint must match to be resumed; None: the task's name and size.
    """

    def __init__(self, trained: Trainable, backend, task: Task, *, config: ReinforceConfig,
                 run_dir: str | Path, validation: Task | None = None, name: str = "expert",
                 progress: bool = True, grad_backend=None, data_version: dict | None = None):
        self.backend, self.task, self.config = backend, task, config
        self.grad_backend = grad_backend or backend
        if not getattr(self.grad_backend, "shares_weights", False):
            raise ValueError(f"backend {getattr(self.grad_backend, 'name', self.grad_backend)!r} computes no gradients "
                             "through the model's weights; pass grad_backend=<an HF backend over the trained model> "
                             "(t2lib.session.Session.grad_backend)")
        if config.objective == "next_token":
            task.reference_answer(task.ids[0])  # a task without reference answers fails here, naming the fix
        self.autocast_dtype = resolve_grad_dtype(config.grad_dtype, self.grad_backend.device)
        self.validation = validation
        self.run_dir = Path(run_dir)
        self.name = name
        self.progress = progress
        self.data_version = data_version
        self.trained = trained
        self.model = trained.model
        self.params = trained.start(config)
        self.targets = list(self.params)
        self._setup_optimizer()

    def _setup_optimizer(self) -> None:
        """Builds the optimizer and schedule over `self.params` and the run state."""
        config = self.config
        params = list(self.params.values())
        if config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        if config.schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.steps)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)
        self.step_done = 0
        self.best = {"step": 0, "accuracy": -1.0, "z": None}
        self.evals: list[dict] = []
        self.train_seconds = 0.0

    # ----------------------------------------------------------------- files
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def identity(self) -> dict:
        """Returns what a checkpoint must match to be resumed: config, task (and its data's version
        when given), base weights."""
        return {"config": asdict(self.config), "task": self.task.name, "train_size": len(self.task),
                "base_fingerprint": self.trained.base_fingerprint, "targets": self.targets,
                **({"data_version": self.data_version} if self.data_version else {})}

    def save_checkpoint(self) -> None:
        """Writes the state after `step_done` steps atomically."""
        state = {"version": CHECKPOINT_VERSION, "identity": self.identity(), "step": self.step_done,
                 "z": {n: p.detach().cpu().clone() for n, p in self.params.items()},
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "best": self.best, "evals": self.evals, "train_seconds": self.train_seconds}
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> bool:
        """Restores the state of an earlier run in `run_dir`; returns False when there is none."""
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        if state.get("version") != CHECKPOINT_VERSION or state["identity"] != self.identity():
            mine, theirs = self.identity(), state.get("identity", {})
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if "config" in diff:
                diff = [f"config.{k}" for k, v in mine["config"].items()
                        if theirs.get("config", {}).get(k) != v] + [d for d in diff if d != "config"]
            raise ValueError(f"{self.checkpoint_path} belongs to a run with other settings ({', '.join(diff)}); "
                             "use another run folder, or start over with fresh=True (--fresh)")
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state["z"][n])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_done, self.best, self.evals = state["step"], state["best"], state["evals"]
        self.train_seconds = state["train_seconds"]
        self._trim_metrics()
        return True

    def _trim_metrics(self) -> None:
        """Drops metrics lines written after the checkpoint (a step interrupted before saving)."""
        rows = read_metrics(self.run_dir)
        kept = [r for r in rows if r["step"] <= self.step_done]
        if len(kept) != len(rows):
            atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def history(self) -> list[dict]:
        """Returns the metrics rows written so far."""
        return read_metrics(self.run_dir)

    # ------------------------------------------------------------- the maths
    def _sampling(self, task: Task, step: int = 0) -> SamplingParams:
        c = self.config
        base = task.sampling
        seed = None if c.temperature == 0 else c.seed * 1_000_003 + step
        return SamplingParams(max_new_tokens=c.max_new_tokens or base.max_new_tokens,
                              temperature=c.temperature, top_p=base.top_p, stop=base.stop, seed=seed)


    def artifact(self, params: dict[str, torch.Tensor]):
        """Returns what training makes of `params` (an `Expert`, a `LoRAAdapter`), with this run's
        config (and the autocast dtype that `grad_dtype` resolved to on this device, None for none:
        "auto" differs across CPUs)."""
        return self.trained.artifact(params, name=self.name, config={"task": self.task.name, **asdict(self.config),
                                                                     "grad_dtype_resolved": self.autocast_dtype})

    def step(self, sample_ids: Sequence[str], *, step: int) -> dict:
        """Runs one REINFORCE update on `sample_ids`; returns its metrics."""
        c = self.config
        t0 = time.perf_counter()
        if c.objective == "next_token":
            return self._supervised_step(sample_ids, step=step)
        self.trained.write_live(self.params)  # W' for the rollouts
        sampling = self._sampling(self.task, step)
        requests = [self.task.request(s, sampling=sampling) for s in sample_ids]
        generations = self.backend.generate(requests, progress=False)
        scores = self.task.score_many(sample_ids, [g.text for g in generations])
        t1 = time.perf_counter()
        rewards = torch.tensor([c.reward_correct if s.correct else c.reward_wrong for s in scores])
        adv = advantages(rewards, normalize=c.normalize_rewards)
        lp_requests = [LogprobRequest(r.prompt, continuation_ids=g.token_ids)
                       for r, g in zip(requests, generations)]
        pg_loss, kl_sum = self.accumulate_gradient(lp_requests, adv)
        t2 = time.perf_counter()
        grad_norm, lr = self._optimizer_step()
        return {"step": step, "reward": float(rewards.mean()), "accuracy": sum(s.correct for s in scores) / len(scores),
                "pg_loss": pg_loss, "kl": kl_sum / len(sample_ids), "grad_norm": grad_norm, "lr": lr,
                "answer_tokens": sum(len(g.token_ids) for g in generations) / len(generations),
                "truncated": sum(g.finish_reason == "length" for g in generations) / len(generations),
                "rollout_s": round(t1 - t0, 3), "update_s": round(time.perf_counter() - t1, 3),
                "gradient_s": round(t2 - t1, 3)}

    def _optimizer_step(self) -> tuple[float, float]:
        """Clips, steps the optimizer and the schedule; returns (gradient norm before clipping, lr)."""
        c = self.config
        params = list(self.params.values())
        if c.grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, c.grad_clip))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, lr

    def reference_ids(self, sample_id: str) -> tuple[int, ...]:
        """Returns the token ids next-token training fits: the reference answer, then the end of the
        turn (the tokenizer's EOS), so the model also learns to stop where the answer ends."""
        tok = self.grad_backend.tokenizer
        ids = tok(self.task.reference_answer(sample_id), add_special_tokens=False, return_attention_mask=False)
        return (*ids["input_ids"], tok.eos_token_id)

    def _supervised_step(self, sample_ids: Sequence[str], *, step: int) -> dict:
        """One next-token update: the mean negative log-likelihood of the reference answers."""
        t0 = time.perf_counter()
        requests = [LogprobRequest(self.task.request(s).prompt, continuation_ids=self.reference_ids(s))
                    for s in sample_ids]
        nll, kl_sum = self.accumulate_gradient(requests, torch.ones(len(requests)))
        grad_norm, lr = self._optimizer_step()
        return {"step": step, "nll": nll, "kl": kl_sum / len(sample_ids), "grad_norm": grad_norm, "lr": lr,
                "update_s": round(time.perf_counter() - t0, 3)}

    def accumulate_gradient(self, requests: Sequence[LogprobRequest], adv: torch.Tensor) -> tuple[float, float]:
        """Sets z.grad to the gradient of the REINFORCE loss (+ λ·KL) over `requests` at the
        current z; returns (policy-gradient loss, summed KL).

        The live weights are the base model's: in each micro-batch the target layers compute
        U((σ ⊙ scale(z)) ⊙ Vᵀx) from the factors (`SVFModel.factored`), so backpropagation
        reaches z without forming dL/dW', and the KL reference is the same model unpatched.
        """
        c = self.config
        n = len(requests)
        self.trained.write_base()  # base weights live: the targets run from the factors, the KL reference as is
        for p in self.params.values():
            p.grad = torch.zeros_like(p)
        if not bool(adv.abs().sum()) and c.kl_coef == 0:
            return 0.0, 0.0  # nothing to learn from this batch: skip the forward passes
        model = self.model
        attention = model.config._attn_implementation
        if c.grad_attention:
            model.set_attn_implementation(c.grad_attention)
        # Micro-batches of similar lengths waste less compute on padding; the sum is the same.
        lengths = [len(self.grad_backend.encode(r.prompt)) + len(r.continuation_ids or ()) for r in requests]
        order = sorted(range(n), key=lambda i: lengths[i])
        pg_total, kl_total = 0.0, 0.0
        try:
            for start in range(0, n, c.micro_batch_size):
                idx = order[start:start + c.micro_batch_size]
                chunk = [requests[i] for i in idx]
                ref = self._reference_distributions(chunk) if c.kl_coef else None
                with self.trained.grad_context(), self._autocast():
                    lp = self.grad_backend.logprobs(chunk, grad=True, distributions=ref is not None)
                seq = lp.mean() if c.logprob_reduction == "mean" else lp.sums
                weights = adv[idx].to(seq.device, seq.dtype)
                loss = -(weights * seq).sum() / n
                pg_total += float(loss.detach())
                if ref is not None:
                    per_token = (lp.log_dist.exp() * (lp.log_dist - ref)).sum(-1)
                    parts = torch.split(per_token, lp.counts.tolist())
                    per_seq = torch.stack([t.mean() if c.logprob_reduction == "mean" else t.sum() for t in parts])
                    kl_total += float(per_seq.detach().sum())
                    loss = loss + c.kl_coef * per_seq.sum() / n
                loss.backward()
        finally:
            if c.grad_attention:
                model.set_attn_implementation(attention)
        return pg_total, kl_total

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.grad_backend.device.type, dtype=getattr(torch, self.autocast_dtype))

    def _reference_distributions(self, chunk: Sequence[LogprobRequest]) -> torch.Tensor:
        """Returns the base model's log-distributions on `chunk`."""
        with self.trained.reference_context(), self._autocast():
            return self.grad_backend.logprobs(chunk, distributions=True).log_dist.float()

    # -------------------------------------------------------------- the loop
    def evaluate(self, task: Task, params: dict[str, torch.Tensor] | None, *, limit: int | None = None,
                 progress: bool = False) -> float:
        """Returns the accuracy on `task` with `params` live (None: the base model), weights restored after."""
        with self.trained.answering(params):
            return task.evaluate(self.backend, sample_ids=spread_ids(task.ids, limit),
                                 sampling=evaluation_sampling(self.config, task), progress=progress).accuracy

    def _validate(self, step: int) -> dict:
        params = None if step == 0 else self.params
        acc = self.evaluate(self.validation, params, limit=self.config.eval_limit)
        row = {"step": step, "accuracy": acc}
        self.evals.append(row)
        if acc > self.best["accuracy"]:  # a tie keeps the earlier step (closer to the base model)
            self.best = {"step": step, "accuracy": acc,
                         "z": None if params is None else {n: p.detach().cpu().clone() for n, p in params.items()}}
        return row

    def train(self, *, fresh: bool = False, on_step: Callable[[dict], None] | None = None) -> TrainResult:
        """Runs (or resumes) training to `config.steps`; returns the best-by-validation expert.

        Args:
            fresh: ignore a checkpoint in `run_dir` and start over.
            on_step: called with each step's metrics after its checkpoint is written.

        Raises:
            FolderBusyError: at once, touching nothing, when another process holds `run_dir`.
        """
        with owning(self.run_dir, what=f"training {self.name!r}"):
            return self._train(fresh=fresh, on_step=on_step)

    def _train(self, *, fresh: bool, on_step: Callable[[dict], None] | None) -> TrainResult:
        """`train`'s work, with `run_dir` held."""
        c = self.config
        if fresh:
            for path in (self.checkpoint_path, self.metrics_path):
                path.unlink(missing_ok=True)
        resumed = self.load_checkpoint()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not resumed:
            atomic_write_text(self.run_dir / "config.json", json.dumps(self.identity(), indent=2) + "\n")
            self.metrics_path.unlink(missing_ok=True)
            started = time.perf_counter()
            if self.validation is not None:
                append_jsonl(self.metrics_path, {"step": 0, "val_accuracy": self._validate(0)["accuracy"]})
            self.train_seconds += time.perf_counter() - started
            self.save_checkpoint()
        bar = tqdm(total=c.steps, initial=self.step_done, desc=f"train {self.name}", unit="step",
                   disable=not self.progress)
        try:
            for step in range(self.step_done + 1, c.steps + 1):
                started = time.perf_counter()
                row = self.step(batch_ids(self.task.ids, step, c.batch_size, c.seed), step=step)
                if self.validation is not None and (step % c.eval_every == 0 or step == c.steps):
                    row["val_accuracy"] = self._validate(step)["accuracy"]
                self.trained.write_base()
                self.train_seconds += time.perf_counter() - started
                row["train_s"] = round(self.train_seconds, 1)
                self.step_done = step
                append_jsonl(self.metrics_path, row)
                self.save_checkpoint()
                bar.update(1)
                loss = f"reward={row['reward']:+.2f}" if "reward" in row else f"nll={row['nll']:.3f}"
                bar.set_postfix_str(f"{loss}, val={self.evals[-1]['accuracy']:.0%}" if self.evals else loss)
                if on_step is not None:
                    on_step(row)
        finally:
            bar.close()
            self.trained.write_base()
        best = self.best["z"] if self.validation is not None else self.params
        if best is None:  # no step beat the base model on validation: the neutral params (the base model)
            best = self.trained.neutral()
        expert = self.artifact(best)
        expert.metrics = {"best_step": self.best["step"] if self.validation is not None else c.steps,
                          "val_accuracy": self.best["accuracy"] if self.validation is not None else None,
                          "val_base_accuracy": self.evals[0]["accuracy"] if self.evals else None,
                          "train_seconds": round(self.train_seconds, 1), "steps": c.steps,
                          "evals": list(self.evals)}
        return TrainResult(expert=expert, best_step=expert.metrics["best_step"], history=self.history(),
                           evals=list(self.evals), train_seconds=self.train_seconds)
