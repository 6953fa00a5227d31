"""Presets: one typed configuration per scale (smoke, tiny, rehearsal, paper). See docs/presets.md."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from fishfarm.backends import BACKEND_CHOICES
from fishfarm.suites import SUITES, Suite, SuiteFileError, get_suite, is_suite_file
from fishfarm.suites.from_file import suite_stamp
from fishfarm.task import Task
from t2lib.methods.cem import CEMConfig
from t2lib.core.models import DEFAULT_MODEL, LoadedModel, load_model
from t2lib.methods.reinforce import ReinforceConfig


@dataclass(frozen=True)
class Preset:
    """Settings shared by every notebook for one scale.

    Args:
        name: "smoke" | "tiny" | "rehearsal" | "paper".
        model: base model hub id or local folder.
        model_source: where its weights come from (`t2lib.core.models.resolve_model`). The CPU presets
            pin "offline" (the packaged Q4_1 weights), so that the shipped experts, which are tied
            to the exact base weights, and the committed figures are the same for everyone.
        targets: target set for SVF (paper default: MLP gate/up/down).
        dtype: model dtype; "auto" is fp32 on the CPU, bf16 on a GPU.
        device_map: shard the HF model over several GPUs with accelerate ("auto"; the gradient
            model of a 70B run), None: one device. The vLLM engine spreads over GPUs with
            `backend_options={"vllm": {"tensor_parallel_size": n}}`.
        svd_storage_dtype: dtype of the cached U and Vᵀ ("bfloat16" halves the cache at 8B scale).
        inspect_prompts: prompts used to show what scaling singular values does (notebook 01).
        inspect_max_new_tokens: answer length in that demonstration.
        suite: which tasks experts and adaptation use: a name in `fishfarm.suites.SUITES`
            ("tiny" or "paper"), or the path of a suite file (docs/own_tasks.md; `with_options` sets it).
        eval_limit: samples per evaluation (None: the whole split).
        paper_eval_limit: samples of each paper task in the baseline (None: the whole test split).
        paper_max_new_tokens: answer budget on paper tasks (None: the paper's 512 / 1024).
        batch_size: prompts per generation batch.
        max_batch_tokens: cap on a batch's padded prompt tokens (long prompts: smaller batches).
        logprob_batch_size: sequences per forward pass when only scoring.
        train: how experts are trained (`t2lib.methods.reinforce.ReinforceConfig`).
        expert_set: which expert set (folder under experts/) adaptation, the quickstart and the
            explorer read (default: the preset's name); smoke reads the shipped tiny experts,
            which share its base weights. Training writes to experts/<name>/.
        gpu_memory_gib: the CUDA GPU memory the preset needs (None: runs on the CPU); checked
            before any long work (`t2lib.runs.preflight`).
        gpus: how many such GPUs (several: the HF model sharded by `device_map`, the vLLM engine
            by tensor parallelism).
        backend: which generation backend answers: a name in `fishfarm.backends.BACKENDS`, or
            "auto" (vLLM where it is installed and a CUDA GPU is present, else HF).
        backend_options: backend name -> its own settings (`fishfarm.backends.make_backend`), e.g.
            {"vllm": {"gpu_memory_utilization": 0.3}}: the share of one GPU the vLLM engine takes,
            leaving the rest to the HF model that computes the gradients.
        dispatch_mode: how pass 1 reads the classification prompt: "choice" (category likelihoods)
            or "generate" (the paper's: generate, parse the box).
        cls_dispatch_mode: how the classification expert's answer is read (it is trained on the
            "generate" reading).
        cem: the few-shot search over mixing weights α (`per_layer`, `per_matrix`, `mix_space`,
            `shot_seeds`: docs/differences.md).
        arc_cot_prefix: ARC answers start with "Let's think step by step", as the official code's
            Llama-3 template writes them (paper suite only; default off: the paper does not say so).
        train_by_task: task name -> settings that replace `train` for that task's expert.
        train_kl_sweep: λ values to train each expert with, keeping the best on validation
            (empty: `train.kl_coef` alone).
        suite_version: a suite file's version (sha256 of the file and its data files, set with the
            suite by `with_options`), so that results kept for one version are not reused for another.
    """

    name: str
    model: str = DEFAULT_MODEL
    model_source: str = "auto"
    targets: str = "mlp"
    dtype: str = "auto"
    device_map: str | None = None
    svd_storage_dtype: str = "float32"
    inspect_prompts: int = 6
    inspect_max_new_tokens: int = 48
    suite: str = "tiny"
    eval_limit: int | None = None
    paper_eval_limit: int | None = 10
    paper_max_new_tokens: int | None = 64
    batch_size: int = 64
    max_batch_tokens: int | None = 6144
    logprob_batch_size: int = 16
    train: ReinforceConfig = field(default_factory=ReinforceConfig)
    train_by_task: dict = field(default_factory=dict)
    train_kl_sweep: tuple[float, ...] = ()
    expert_set: str = ""
    backend: str = "hf"
    backend_options: dict = field(default_factory=dict)
    gpu_memory_gib: float | None = None
    gpus: int = 1
    dispatch_mode: str = "choice"
    cls_dispatch_mode: str = "generate"
    cem: CEMConfig = field(default_factory=CEMConfig)
    arc_cot_prefix: bool = False
    suite_version: str = ""

    def __post_init__(self):
        if not self.expert_set:
            object.__setattr__(self, "expert_set", self.name)
        if self.backend not in BACKEND_CHOICES:
            raise ValueError(f"preset {self.name!r}: unknown backend {self.backend!r}; choose one of "
                             f"{', '.join(BACKEND_CHOICES)}")
        get_suite(self.suite)  # an unknown suite fails here, naming the registered ones

    @property
    def suite_spec(self) -> Suite:
        """Returns the suite experts are trained on and adaptation is tested on."""
        return get_suite(self.suite)

    @property
    def folder(self) -> str:
        """Returns the folder name of the preset's experts, kept results and figures: its name, or
        <suite>/<preset> for a suite file (experts/two_skills/tiny/), never the shipped ones'."""
        return f"{self.suite_spec.name}/{self.name}" if is_suite_file(self.suite) else self.name

    @property
    def cli_options(self) -> str:
        """Returns the command-line options that choose this preset and suite ("--preset tiny --suite FILE")."""
        if not is_suite_file(self.suite):
            return f"--preset {self.name}"
        path = Path(self.suite)
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        return f"--preset {self.name} --suite {shown}"

    def task(self, name: str, split: str = "test", *, suite: str | None = None) -> Task:
        """Returns task `name` of `suite` (default: the preset's) on `split`; a paper-scale
        suite's tasks get the preset's `paper_max_new_tokens`, the others keep their own budgets."""
        s = get_suite(suite or self.suite)
        return s.task(name, split, max_new_tokens=self.paper_max_new_tokens if s.paper_scale else None,
                      arc_cot_prefix=self.arc_cot_prefix)

    def train_config(self, task: str) -> ReinforceConfig:
        """Returns the training settings of `task`'s expert."""
        return self.train_by_task.get(task, self.train)

    def load_model(self, *, device=None) -> LoadedModel:
        """Returns the preset's base model, loaded from its pinned source."""
        return load_model(self.model, source=self.model_source, dtype=self.dtype, device=device,
                          device_map=self.device_map)


# Tiny: measured on 2 cores, a few minutes per expert (see docs/training.md). Batch-normalized
# rewards: with raw ±1 and 16 prompts a batch of mostly wrong answers pushes every answer down.
TINY_TRAIN = ReinforceConfig(steps=20, batch_size=16, micro_batch_size=8, lr=1e-3, optimizer="adamw",
                             schedule="constant", grad_clip=1e-3, normalize_rewards=True, logprob_reduction="mean",
                             grad_dtype="auto", grad_attention="eager", eval_every=5)
# Paper Table 6 and the official configs (docs/differences.md): AdamW lr 2e-3 with cosine decay, 256
# prompts a step, gradient norm clipped at 1e-3, greedy rollouts, raw ±1 rewards, z starting at
# 0.1 + 0.01·N(0, 1) through the official sigmoid parameterization, validation every 10 steps.
# Micro-batches of 4 (the same gradient as 8, accumulated): the update peaked at 57.6 GiB with 8 on an
# H100, which leaves no room for the vLLM engine's 30% of an 80 GB GPU; with 4, about 48 GiB (estimated
# from the 8 and 16 measurements; docs/backends.md).
PAPER_TRAIN = ReinforceConfig(steps=200, batch_size=256, micro_batch_size=4, lr=2e-3, optimizer="adamw",
                              schedule="cosine", grad_clip=1e-3, kl_coef=0.0, normalize_rewards=False,
                              parameterization="sigmoid", init_noise=0.01, eval_every=10)
PAPER_KL_SWEEP = (0.0, 0.1, 0.2, 0.3)  # λ values the paper chooses among on validation
VLLM_MEMORY = 0.3  # default share of a GPU the vLLM engine takes beside the HF model

# Tiny: one α per expert, 6 candidates x 3 iterations on 10 shots (the uniform mixture and the
# base model among the first; 16 evaluations, ~1-3 min per task on 2 cores).
TINY_CEM = CEMConfig(shots=10, population=6, elite_ratio=1 / 3, iterations=3, per_layer=False)

# Rehearsal: every code path of the paper preset (paper suite and prompts, sigmoid experts, a λ sweep,
# the classification expert, "generate" dispatch, per-layer CEM with the official elite ratio) on the
# tiny offline model with budgets of seconds. Its numbers mean nothing; that it runs end to end does.
REHEARSAL_TRAIN = replace(PAPER_TRAIN, steps=2, batch_size=4, micro_batch_size=4, eval_every=1, eval_limit=4,
                          max_new_tokens=16)

PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", model_source="offline", expert_set="tiny", inspect_prompts=2, inspect_max_new_tokens=8, eval_limit=4,
                    paper_eval_limit=2, paper_max_new_tokens=16,
                    train=replace(TINY_TRAIN, steps=2, batch_size=4, micro_batch_size=4, eval_every=1,
                                  eval_limit=4, max_new_tokens=16),
                    cem=CEMConfig(shots=2, population=2, elite_ratio=0.5, iterations=1, per_layer=False)),
    "tiny": Preset("tiny", model_source="offline", train=TINY_TRAIN, cem=TINY_CEM),
    "rehearsal": Preset("rehearsal", model_source="offline", suite="paper", inspect_prompts=2,
                        inspect_max_new_tokens=8, eval_limit=4, paper_eval_limit=4, paper_max_new_tokens=16,
                        train=REHEARSAL_TRAIN, train_kl_sweep=(0.0, 0.1), dispatch_mode="generate",
                        cem=CEMConfig(shots=2, population=5, iterations=1, per_layer=True)),
    "paper": Preset("paper", model="meta-llama/Meta-Llama-3-8B-Instruct", svd_storage_dtype="bfloat16",
                    inspect_prompts=6, inspect_max_new_tokens=128, suite="paper", paper_eval_limit=None,
                    paper_max_new_tokens=None, batch_size=64, train=PAPER_TRAIN,
                    train_kl_sweep=PAPER_KL_SWEEP, dispatch_mode="generate", cem=CEMConfig(),
                    # one GPU for both engines: vLLM's weights (16 GB in bf16) and KV cache in 30% of
                    # it, the HF model and its update in the rest (docs/backends.md)
                    backend="auto", backend_options={"vllm": {"gpu_memory_utilization": VLLM_MEMORY}},
                    # the update peaked at 57.6 GiB on an H100 (docs/benchmarks.md): an 80 GB GPU
                    gpu_memory_gib=70.0),
}
# Llama-3-70B-Instruct, the paper's third model (docs/backends.md: the memory plan): the HF model
# and its SVD factors sharded over 8 GPUs by accelerate, the vLLM engine over the same 8 by tensor
# parallelism. Wired and checked on the CPU as far as those engines go; not run on GPUs here.
PRESETS["paper-70b"] = replace(PRESETS["paper"], name="paper-70b", model="meta-llama/Meta-Llama-3-70B-Instruct",
                               device_map="auto", gpus=8, expert_set="paper-70b",
                               backend_options={"vllm": {"gpu_memory_utilization": VLLM_MEMORY,
                                                         "tensor_parallel_size": 8}})


def get_preset(name: str, **overrides) -> Preset:
    """Returns the preset `name`, with any field overridden by keyword."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def add_preset_arguments(parser, *, model_options: bool = True) -> None:
    """Adds --preset (and, for commands that load a model, --backend, --model and --targets) to a
    command line's parser; `preset_from_args` turns them into the `Preset`."""
    from t2lib.core.svd import TARGET_SETS

    parser.add_argument("--preset", default="tiny", choices=PRESETS, help="default: tiny")
    parser.add_argument("--suite", type=suite_argument, metavar="FILE",
                        help="your own tasks: a suite file (.yaml, docs/own_tasks.md); default: the preset's "
                             "suite. The preset still sets the budgets")
    if model_options:
        parser.add_argument("--backend", choices=BACKEND_CHOICES, help="generation backend (default: the preset's)")
        parser.add_argument("--model", help="base model, a hub id or a local folder (default: the preset's); "
                                            "any Llama, Mistral or Qwen2-family causal LM")
        parser.add_argument("--targets", choices=tuple(TARGET_SETS),
                            help="target matrices (default: the preset's, mlp; attn: q and v, as in Table 4)")
        parser.add_argument("--arc-cot", action="store_true",
                            help="ARC answers start with \"Let's think step by step\" (the official Llama-3 ARC template)")
        parser.add_argument("--vllm-memory", type=float, metavar="FRACTION",
                            help=f"share of the GPU the vLLM engine takes, the rest left to the HF model that "
                                 f"computes gradients (default {VLLM_MEMORY})")
        parser.add_argument("--expert-adapters", type=int, metavar="RANK",
                            help="pass 2 serves experts as LoRA adapters of this rank, every expert in one vLLM "
                                 "batch (needs --backend vllm; ranks 1, 8, 16, 32, 64, 128, 256, 320, 512; a "
                                 "truncation where the matrices have more singular values). Default: experts "
                                 "applied in place, exact")


def suite_argument(value: str) -> str:
    """Returns a --suite value after reading and checking it (argparse `type`): a bad suite file is
    reported as the argument's error, naming the file, the key or row and the fix."""
    import argparse

    try:
        check_suite(value)
    except (SuiteFileError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def check_suite(suite: str) -> str:
    """Returns a suite file's path as a preset names it (absolute) after reading and checking the
    file; it may not be named after a preset or a registered suite (folders). The registered suites
    come with their presets (tiny, paper): their experts' folders are the presets'."""
    if not is_suite_file(suite):
        raise SuiteFileError(f"--suite {suite!r}: give the path of a suite file (.yaml or .yml, docs/own_tasks.md); "
                             f"the shipped suites ({', '.join(SUITES)}) come with their presets (--preset)")
    path = Path(suite).expanduser().resolve()
    name = get_suite(str(path)).name
    if name in PRESETS or name in SUITES:
        raise SuiteFileError(f"{path}: key name: {name!r} is a preset's or a shipped suite's name, and its "
                             f"folders are theirs. Fix: give the suite another name")
    return str(path)


def with_options(preset: Preset, *, backend: str | None = None, model: str | None = None,
                 targets: str | None = None, vllm_memory: float | None = None, arc_cot: bool = False,
                 suite: str | None = None, expert_adapters: int | None = None) -> Preset:
    """Returns `preset` with the options a command line or a notebook's parameters cell gives
    (None keeps the preset's): a suite file (read and checked here; its experts are its own,
    experts/<suite>/<preset>/), the backend ("auto" resolved here, so results name the one used),
    the base model (then looked up everywhere, not in the pinned package), the target set, the
    vLLM engine's share of the GPU and the official ARC answer start (True turns it on).

    Raises:
        ValueError / BackendUnavailableError: an unknown value, or a backend that cannot run here,
            with the fix, before any model is loaded.
    """
    from fishfarm.backends import resolve_backend
    from t2lib.core.svd import TARGET_SETS

    changes: dict = {"arc_cot_prefix": True} if arc_cot else {}
    if suite:
        changes["suite"] = check_suite(suite)
        if is_suite_file(suite):
            spec = get_suite(changes["suite"])
            changes["expert_set"] = f"{spec.name}/{preset.name}"
            changes["suite_version"] = hashlib.sha256(json.dumps(suite_stamp(spec)["data_sha256"], sort_keys=True)
                                                      .encode() + spec.source["sha256"].encode()).hexdigest()
    if model:
        changes.update(model=model, model_source="auto")
    if targets:
        if targets not in TARGET_SETS:
            raise ValueError(f"unknown target set {targets!r}; choose one of {', '.join(TARGET_SETS)}")
        changes["targets"] = targets
    if vllm_memory is not None:
        if not 0 < vllm_memory < 1:
            raise ValueError(f"--vllm-memory {vllm_memory}: give the vLLM engine's share of the GPU as a fraction "
                             "between 0 and 1, e.g. 0.3")
        options = {k: dict(v) for k, v in preset.backend_options.items()}
        options.setdefault("vllm", {})["gpu_memory_utilization"] = vllm_memory
        changes["backend_options"] = options
    name = backend or preset.backend
    if name not in BACKEND_CHOICES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    changes["backend"] = resolve_backend(name)
    if expert_adapters is not None:
        changes["backend_options"] = adapter_options(changes.get("backend_options", preset.backend_options),
                                                     backend=changes["backend"], rank=expert_adapters,
                                                     targets=changes.get("targets", preset.targets))
    return replace(preset, **changes)


def adapter_options(backend_options: dict, *, backend: str, rank: int, targets: str = "mlp") -> dict:
    """Returns `backend_options` with the vLLM engine serving experts as LoRA adapters of `rank` on
    the `targets` layers (`VLLMBackend` enable_lora / max_lora_rank / lora_target_modules): pass 2 of
    Transformer² then answers every expert in one batch (`t2lib.methods.transformer2`).

    Raises:
        ValueError: the backend is not vLLM, or vLLM allows no such rank.
    """
    from fishfarm.backends.vllm import LORA_RANKS
    from t2lib.core.svd import target_modules

    if backend != "vllm":
        raise ValueError(f"--expert-adapters serves experts per request through the vLLM engine; the backend is "
                         f"{backend!r}: add --backend vllm, or drop --expert-adapters to apply experts in place")
    if rank not in LORA_RANKS:
        raise ValueError(f"--expert-adapters {rank}: vLLM serves adapters of rank {', '.join(map(str, LORA_RANKS))}; "
                         "choose one of them")
    options = {k: dict(v) for k, v in backend_options.items()}
    leaves = [m.rsplit(".", 1)[-1] for m in target_modules(targets)]
    options.setdefault("vllm", {}).update(enable_lora=True, max_lora_rank=rank, lora_target_modules=leaves)
    return options


def preset_from_args(args) -> Preset:
    """Returns the preset a command line names, with its --suite, --backend, --model, --targets,
    --vllm-memory, --arc-cot and --expert-adapters."""
    return with_options(get_preset(args.preset), suite=getattr(args, "suite", None), backend=getattr(args, "backend", None),
                        model=getattr(args, "model", None), targets=getattr(args, "targets", None),
                        vllm_memory=getattr(args, "vllm_memory", None), arc_cot=getattr(args, "arc_cot", False),
                        expert_adapters=getattr(args, "expert_adapters", None))
