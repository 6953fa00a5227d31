"""Prompts for the paper's tasks, worded as in the official code (SakanaAI/self-adaptive-llms).

The paper gives no prompt text, so each task's system message, user message and (for code)
response prefix follow the official task classes: `Gsm8kTask`, `MathTask`, `AI2ArcTask`,
`Mbpp2Task` (tasks/ of the official repository) and the official fishfarm's
``fishfarm.tasks.evalplus`` data module (``map_mbpp_problem``, ``map_humaneval_problem``).

Official wording is kept to the character, quirks included: the MATH system message lacks a
space after its comma, the code system message has a double space, and the GSM8K system message
ends in two newlines. The official Llama-3 template for ARC also starts the answer with
`LLAMA3_COT_PREFIX`; code tasks use their own plain-text template (`code_prompt_text`) for every
model, with the assistant turn already begun by the response prefix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from fishfarm.data.records import ChoiceQuestion, CodeProblem, MathProblem
from fishfarm.types import Prompt

GSM8K_SYSTEM = ("Below is an instruction that describes a task."
                " Write a response that appropriately completes the request.\n\n")
MATH_SYSTEM = ("Solve the question below by reasoning step by step,"
               "and put the final answer within \\boxed{}.")
ARC_SYSTEM = ("The following are multiple choice questions (with answers). "
              "Think step by step and then finish your answer "
              'with "the answer is (X)" where X is the correct letter choice.')
CODE_SYSTEM = ("You are an exceptionally intelligent coding assistant that "
               " consistently delivers accurate and reliable responses to user instructions.")
# The official Llama-3 chat template for ARC appends this after the assistant header.
LLAMA3_COT_PREFIX = "Let's think step by step"
# The official decoding stops at these strings for every task (vLLM SamplingParams.stop).
OFFICIAL_STOP = ("Instruction:", "Instruction", "Response:", "Response")

Record = Union[MathProblem, CodeProblem, ChoiceQuestion]

# The paper's prompt for prompt-based adaptation (§3.2, appendix): the base model puts one of
# four categories in \boxed{}; "other" means "answer with the base weights". The kit sends the
# instructions as the system message and the question as the user message, and starts the answer
# with "Classification: \boxed{" (the format the prompt asks for): SmolLM2-135M given the whole
# prompt as one user message answers the question instead of classifying it (5.8% on the tiny
# classification task; see the baseline table in docs/tasks.md).
CLS_CATEGORIES = ("code", "math", "reasoning", "other")
CLS_SYSTEM = r"""Analyze the given question and classify it into one of four categories: 'code', 'math', 'reasoning' or 'other'. Follow these guidelines:

1. Code: Questions asking for programming solutions, functions, algorithms. Often includes specific programming terms, language syntax, or data structures.
2. Math: Questions involving mathematical calculations, formulas, statistics. Often includes numbers, equations, or mathematical operations.
3. Reasoning: Questions requiring logical thinking, application of scientific knowledge, or critical analysis of information. Often presents statements that need evaluation based on general understanding.
4. Other: Questions not clearly fit into above categories.

Instructions:
- Consider the primary focus, skills, and knowledge required to answer the question.
- If a question spans multiple categories, choose the most dominant one.
- Provide your final classification within \boxed{} notation. Example: \boxed{reasoning}

Format your response as follows:
Classification: \boxed{category}"""
CLS_RESPONSE_PREFIX = "Classification: \\boxed{"


@dataclass(frozen=True)
class TaskPrompt:
    """The parts of one prompt.

    Args:
        system: the system message.
        user: the user message.
        response_prefix: text the assistant turn starts with, which the model continues
            (code tasks); empty otherwise.
    """
    system: str
    user: str
    response_prefix: str = ""


def gsm8k_user(problem: MathProblem) -> str:
    """Returns the GSM8K user message: the question as-is (official `Gsm8kTask`)."""
    return problem.question


def math_user(problem: MathProblem) -> str:
    """Returns the MATH user message: the problem as-is (official `MathTask`)."""
    return problem.question


def arc_user(question: ChoiceQuestion) -> str:
    """Returns the ARC user message: question, "Options:" and lettered options (`AI2ArcTask`).

    Example: "Which is a mammal?\\nOptions:\\nA. shark\\nB. whale\\nC. trout\\nD. eel\\n".
    """
    options = "".join(f"{label}. {text}\n" for label, text in zip(question.labels,
                                                                  question.choices))
    return f"{question.question}\nOptions:\n{options}"


def mbpp_user(problem: CodeProblem) -> str:
    """Returns the MBPP user message: the task and its first test (``map_mbpp_problem``).

    The task text gets a final period if it lacks one, then "Your code should satisfy the
    following assertion:" and the first assert in a python code block.
    """
    text = problem.prompt.strip()
    if not text.endswith("."):
        text += "."
    return (f"{text} Your code should satisfy the following assertion:\n"
            f"```python\n{problem.tests[0].strip()}\n```")


def humaneval_user(problem: CodeProblem) -> str:
    """Returns the HumanEval user message: the stub in a code block (``map_humaneval_problem``)."""
    return f"Write a solution to the following problem:\n```python\n{problem.prompt.strip()}\n```"


def mbpp_response_prefix(problem: CodeProblem) -> str:
    """Returns the start of the MBPP answer: an opened python code block."""
    return "```python"


def humaneval_response_prefix(problem: CodeProblem) -> str:
    """Returns the start of the HumanEval answer: a python code block holding the stub."""
    return f"```python\n{problem.prompt.strip()}"


_BUILDERS = {
    "gsm8k": (GSM8K_SYSTEM, gsm8k_user, None),
    "math": (MATH_SYSTEM, math_user, None),
    "arc_easy": (ARC_SYSTEM, arc_user, None),
    "arc_challenge": (ARC_SYSTEM, arc_user, None),
    "mbpp": (CODE_SYSTEM, mbpp_user, mbpp_response_prefix),
    "humaneval": (CODE_SYSTEM, humaneval_user, humaneval_response_prefix),
}


def task_prompt(task: str, record: Record) -> TaskPrompt:
    """Returns the official system message, user message and response prefix for a record.

    Args:
        task: "gsm8k", "math", "arc_easy", "arc_challenge", "mbpp" or "humaneval".
        record: a record of that task.
    """
    if task not in _BUILDERS:
        raise KeyError(f"no prompt for task {task!r}; known: {sorted(_BUILDERS)}")
    system, user, prefix = _BUILDERS[task]
    return TaskPrompt(system, user(record), prefix(record) if prefix else "")  # type: ignore


def cls_prompt(question: str) -> Prompt:
    """Returns the classification prompt for one question, its answer primed up to "\\boxed{"."""
    return Prompt.chat(f"Question: {question}", system=CLS_SYSTEM, response_prefix=CLS_RESPONSE_PREFIX)


def code_prompt_text(prompt: TaskPrompt) -> str:
    """Returns a code prompt rendered as the official code template does, for any model.

    The official ``CODE_PROMPT`` chat template (tasks/base) writes
    ``<system>\\n\\n@@ Instruction:\\n<user>\\n\\n@@ Response:\\n<response prefix>`` (each part
    stripped) with no model-specific tokens; the model continues after the prefix.
    """
    return (f"{prompt.system.strip()}\n\n@@ Instruction:\n{prompt.user.strip()}\n\n"
            f"@@ Response:\n{prompt.response_prefix.strip()}")
