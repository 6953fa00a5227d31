"""The tiny suite: one training and one unseen task per category, and a classification task.

| category  | training task (experts learn it)       | unseen task (adaptation is tested on it) |
|-----------|----------------------------------------|------------------------------------------|
| math      | `add_word`: addition word problems     | `sub_word`: subtraction word problems    |
| code      | `fn_arith`: write f(x) for a rule on x | `fn_string`: write f(s) for a string rule|
| reasoning | `where_person`: where is Mia? (bAbI 1) | `where_crowd`: the same, longer stories |

Every task is a seeded family from `fishfarm.suites.tiny.generators` (disjoint splits: 256 train, 48
validation, 120 test). Unseen tasks have no train split: nothing is ever trained on them.
Reasoning is not ARC here: SmolLM2-135M answers ARC at chance in every form tried (docs/tasks.md;
`bench/arc_probe.py`), so an expert has nothing to build on; the paper preset keeps ARC.

`classification_task` asks which category a prompt belongs to (`fishfarm.suites.classification`),
from the training tasks' train-split prompts only.
"""
from __future__ import annotations

from dataclasses import dataclass

from fishfarm.scoring import score_code, score_name, score_number
from fishfarm.suites.classification import classification_task as build_classification
from fishfarm.task import Task
from fishfarm.suites.spec import Suite
from fishfarm.suites.tiny.generators import FAMILIES
from fishfarm.types import SamplingParams

CATEGORIES = ("math", "code", "reasoning")
SAMPLE_SEED = 2025

@dataclass(frozen=True)
class TinyTaskSpec:
    """One task of the tiny suite.

    Args:
        name: task name.
        category: "math" | "code" | "reasoning".
        role: "train" (an expert is trained on it) or "unseen".
        max_new_tokens: answer budget (greedy decoding).
    """
    name: str
    category: str
    role: str
    max_new_tokens: int


TINY_TASKS: dict[str, TinyTaskSpec] = {s.name: s for s in (
    TinyTaskSpec("add_word", "math", "train", 48), TinyTaskSpec("sub_word", "math", "unseen", 48),
    TinyTaskSpec("fn_arith", "code", "train", 64), TinyTaskSpec("fn_string", "code", "unseen", 64),
    TinyTaskSpec("where_person", "reasoning", "train", 24),
    TinyTaskSpec("where_crowd", "reasoning", "unseen", 24),
)}
TRAINING = {s.category: s.name for s in TINY_TASKS.values() if s.role == "train"}
UNSEEN = {s.category: s.name for s in TINY_TASKS.values() if s.role == "unseen"}


def _math_prompt(r) -> str:
    return f"{r['question']}\nAnswer with a single number."


def _code_prompt(r) -> str:
    return r["question"]


def _reasoning_prompt(r) -> str:
    return f"{r['question']}\nAnswer with a place."


PROMPTS = {"math": _math_prompt, "code": _code_prompt, "reasoning": _reasoning_prompt}


def tiny_task(name: str, split: str = "test", *, max_new_tokens: int | None = None) -> Task:
    """Returns one task of the tiny suite on one split.

    Args:
        name: a key of `TINY_TASKS`.
        split: "train" | "validation" | "test" (unseen tasks have no train split).
        max_new_tokens: answer budget (default: the task's own, `TinyTaskSpec.max_new_tokens`).
    """
    if name not in TINY_TASKS:
        raise KeyError(f"unknown tiny task {name!r}; choose one of {', '.join(TINY_TASKS)}")
    spec = TINY_TASKS[name]
    if spec.role == "unseen" and split == "train":
        raise ValueError(f"{name} is an unseen task: it has no train split (use validation or test)")
    sampling = SamplingParams(max_new_tokens=max_new_tokens or spec.max_new_tokens)
    records = FAMILIES[name](split)
    if spec.category == "reasoning":
        return Task(name, records, id_field="id", prompt=_reasoning_prompt, sampling=sampling,
                    scorer=lambda a, r: score_name(a, r["answer"], r["places"]), reference=lambda r: r["answer"])
    if spec.category == "math":
        return Task(name, records, id_field="id", prompt=_math_prompt, sampling=sampling,
                    scorer=lambda a, r: score_number(a, r["answer"]), reference=lambda r: r["answer"])
    return Task(name, records, id_field="id", prompt=_code_prompt, sampling=sampling, score_workers=4,
                scorer=lambda a, r: score_code(a, r["tests"], entry_point=r["entry_point"]),
                reference=_code_reference)


def _code_reference(r) -> str:
    """Returns the generator's solution as a Python code block (how the model answers)."""
    return f"```python\n{r['solution']}```"


def classification_task(split: str = "test", *, max_new_tokens: int = 8) -> Task:
    """Returns the tiny suite's classification task (`fishfarm.suites.classification`): the train
    prompts of its three training tasks, 40 test and 16 validation questions per category."""
    prompts = {}
    for category, name in TRAINING.items():
        task = tiny_task(name, "train")
        prompts[category] = [(sid, PROMPTS[category](task.record(sid))) for sid in task.ids]
    return build_classification(prompts, split, seed=str(SAMPLE_SEED), max_new_tokens=max_new_tokens)


def _build(name: str, split: str, max_new_tokens: int | None, **options) -> Task:
    if name == "classification":
        return classification_task(split, max_new_tokens=max_new_tokens or 8)
    return tiny_task(name, split, max_new_tokens=max_new_tokens)


TINY_SUITE = Suite("tiny", CATEGORIES, TRAINING, UNSEEN, "classification", _build)
