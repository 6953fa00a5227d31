"""The paper suite: its six tasks as `Task`s, with official prompts (`fishfarm.data.prompts`) and our scorers.

    task = paper_task("gsm8k", "test")
    result = task.evaluate(backend, sample_ids=task.ids[:24])

Decoding follows the paper (greedy; 512 new tokens, 1024 for MATH) unless `max_new_tokens` says
otherwise, and stops at the official stop strings. Code answers continue the official response
prefix (an opened code block, or the HumanEval stub), which is put back before scoring.
"""
from __future__ import annotations

import re

from fishfarm.data import CodeProblem, load, task_prompt
from fishfarm.data.prompts import LLAMA3_COT_PREFIX, OFFICIAL_STOP, code_prompt_text
from fishfarm.scoring import score_choice, score_code, score_math, score_number
from fishfarm.scoring.official import score_arc_official, score_gsm8k_official
from fishfarm.suites.classification import classification_task as build_classification
from fishfarm.suites.spec import Suite
from fishfarm.task import Task
from fishfarm.types import Prompt, SamplingParams

PAPER_MAX_NEW_TOKENS = {"gsm8k": 512, "mbpp": 512, "arc_easy": 512, "math": 1024, "humaneval": 512,
                        "arc_challenge": 512}
# Paper Table 1 trains on GSM8K, MBPP(+) and ARC-Easy; Table 2 adapts to MATH, HumanEval, ARC-Challenge.
TRAINING = {"math": "gsm8k", "code": "mbpp", "reasoning": "arc_easy"}
UNSEEN = {"math": "math", "code": "humaneval", "reasoning": "arc_challenge"}
CATEGORY = {name: category for mapping in (TRAINING, UNSEEN) for category, name in mapping.items()}


def _prompt(name: str, *, arc_cot_prefix: bool = False):
    def build(record) -> Prompt:
        tp = task_prompt(name, record)
        if CATEGORY[name] == "code":
            return Prompt.raw(code_prompt_text(tp))  # the official code template, for every model
        if arc_cot_prefix and name.startswith("arc"):  # the official Llama-3 ARC template's answer start
            return Prompt.chat(tp.user, system=tp.system, response_prefix=LLAMA3_COT_PREFIX)
        return Prompt.chat(tp.user, system=tp.system)
    return build


def _code_scorer(name: str):
    def score(answer: str, r: CodeProblem):
        prefix = task_prompt(name, r).response_prefix
        return score_code(f"{prefix}\n{answer}" if prefix else answer, r.test_code, entry_point=r.entry_point)
    return score


# The official evaluation's verdicts, reported beside the kit's ("accuracy_official"); the code tasks
# run the same tests either way.
OFFICIAL_SCORERS = {
    "gsm8k": lambda a, r: score_gsm8k_official(a, r.answer),
    "math": lambda a, r: score_math(a, r.answer, mode="official"),
    "arc_easy": lambda a, r: score_arc_official(a, r.answer_index, r.choices),
    "arc_challenge": lambda a, r: score_arc_official(a, r.answer_index, r.choices),
}


def _gsm8k_reference(r) -> str:
    """GSM8K's worked solution without its calculator notes, ending as the prompt asks."""
    body, _, answer = r.solution.partition("####")
    return re.sub(r"<<[^>]*>>", "", body).strip() + f"\nThe answer is {answer.strip() or r.answer}."


# What next-token training fits (the LoRA baseline): the worked solution, the reference program
# after the opened code block, the official answer sentence.
REFERENCES = {
    "gsm8k": _gsm8k_reference,
    "math": lambda r: r.solution,
    "mbpp": lambda r: f"\n{r.reference_solution.strip()}\n```",
    "arc_easy": lambda r: f"The answer is ({r.labels[r.answer_index]}).",
    "arc_challenge": lambda r: f"The answer is ({r.labels[r.answer_index]}).",
}

SCORERS = {
    "gsm8k": lambda a, r: score_number(a, r.answer),
    "math": lambda a, r: score_math(a, r.answer),
    "arc_easy": lambda a, r: score_choice(a, r.answer_index, labels=r.labels, options=r.choices),
    "arc_challenge": lambda a, r: score_choice(a, r.answer_index, labels=r.labels, options=r.choices),
    "mbpp": _code_scorer("mbpp"),
    "humaneval": _code_scorer("humaneval"),
}


def paper_task(name: str, split: str = "test", *, source: str = "auto", max_new_tokens: int | None = None,
               arc_cot_prefix: bool = False) -> Task:
    """Returns one of the paper's tasks on one split.

    Args:
        name: gsm8k | mbpp | arc_easy | math | humaneval | arc_challenge.
        split: "train" | "validation" | "test" (see `fishfarm.data` for what exists offline).
        source: "auto" | "hub" | "offline".
        max_new_tokens: answer budget; default: the paper's (512, MATH 1024).
        arc_cot_prefix: ARC answers start with "Let's think step by step" (`LLAMA3_COT_PREFIX`),
            as the official code's Llama-3 template for ARC writes them.
    """
    if name not in SCORERS:
        raise KeyError(f"unknown paper task {name!r}; choose one of {', '.join(SCORERS)}")
    dataset = load(name, split, source=source)
    sampling = SamplingParams(max_new_tokens=max_new_tokens or PAPER_MAX_NEW_TOKENS[name], stop=OFFICIAL_STOP)
    task = Task(name, dataset.records, id_field="id", prompt=_prompt(name, arc_cot_prefix=arc_cot_prefix),
                scorer=SCORERS[name], sampling=sampling, score_workers=4 if CATEGORY[name] == "code" else 1,
                official_scorer=OFFICIAL_SCORERS.get(name), reference=REFERENCES.get(name))
    task.source, task.notes = dataset.source, dataset.notes
    return task


CLS_SEED = "paper"  # the classification task's shuffle seed


def paper_classification_task(split: str = "test", *, source: str = "auto", max_new_tokens: int = 8) -> Task:
    """Returns the paper suite's classification task (`fishfarm.suites.classification`): the user
    messages of the GSM8K, MBPP and ARC-Easy train splits (the training tasks; never a test split or an
    unseen task), 40 test and 16 validation questions per category, the rest to train the
    classification expert on."""
    prompts = {}
    for category, name in TRAINING.items():
        dataset = load(name, "train", source=source)
        prompts[category] = [(f"{name}:{r.id}", task_prompt(name, r).user) for r in dataset.records]
    return build_classification(prompts, split, seed=CLS_SEED, max_new_tokens=max_new_tokens)


def _build(name: str, split: str, budget: int | None, *, arc_cot_prefix: bool = False) -> Task:
    if name == "classification":  # its answer is one word after the primed "\boxed{": the task's own budget
        return paper_classification_task(split)
    return paper_task(name, split, max_new_tokens=budget, arc_cot_prefix=arc_cot_prefix)


PAPER_SUITE = Suite("paper", ("math", "code", "reasoning"), TRAINING, UNSEEN, "classification", _build,
                    paper_scale=True)
