"""Code scoring: extraction from markdown answers and test runs in the sandbox."""
import pytest

from fishfarm.sandbox import Sandbox, SandboxConfig
from fishfarm.scoring import build_program, extract_code, score_code, score_code_many

SANDBOX = Sandbox(SandboxConfig(timeout_s=3, cpu_time_s=2))
MBPP_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0"
HUMANEVAL_PROMPT = 'def add(a: int, b: int) -> int:\n    """Adds two numbers."""\n'
HUMANEVAL_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n"


def test_extracts_python_from_markdown():
    answer = ("Here is my solution:\n```python\ndef add(a, b):\n    return a + b\n```\n"
              "Example:\n```python\nprint(add(1, 2))\n```")
    assert extract_code(answer) == "def add(a, b):\n    return a + b"
    assert extract_code(answer, entry_point="add").startswith("def add")


def test_extraction_prefers_the_block_defining_the_entry_point():
    answer = ("```python\nimport math\n```\n```py\ndef helper():\n    pass\n```\n"
              "```python\ndef add(a, b):\n    return a + b\n```")
    assert extract_code(answer, entry_point="add") == "def add(a, b):\n    return a + b"


def test_extraction_handles_plain_and_cut_off_answers():
    assert extract_code("def f():\n    return 1\n") == "def f():\n    return 1"
    assert extract_code("```python\ndef f():\n    return 1") == "def f():\n    return 1"
    assert extract_code("```\ndef f():\n    return 2\n```") == "def f():\n    return 2"


def test_correct_and_wrong_solutions():
    right = score_code("```python\ndef add(a, b):\n    return a + b\n```", MBPP_TESTS,
                       sandbox=SANDBOX)
    assert right.correct and right.detail == ""
    wrong = score_code("def add(a, b):\n    return a - b", MBPP_TESTS, sandbox=SANDBOX)
    assert not wrong.correct and "AssertionError" in wrong.detail


def test_humaneval_style_body_completion_and_check_call():
    program, _ = build_program("    return a + b\n", HUMANEVAL_TEST, entry_point="add",
                               prefix=HUMANEVAL_PROMPT)
    assert program.startswith(HUMANEVAL_PROMPT) and "check(add)" in program
    assert score_code("    return a + b\n", HUMANEVAL_TEST, entry_point="add",
                      prefix=HUMANEVAL_PROMPT, sandbox=SANDBOX).correct
    assert not score_code("    return a * b\n", HUMANEVAL_TEST, entry_point="add",
                          prefix=HUMANEVAL_PROMPT, sandbox=SANDBOX).correct


@pytest.mark.parametrize("answer, reason", [
    ("import sys\nsys.exit(0)", "exited before its tests"),
    ("import os\nos._exit(0)", "exited before its tests"),
    ("def add(a, b):\n    while True: pass", "time"),  # cpu time limit or wall clock
    ("import socket\nsocket.create_connection(('1.1.1.1', 80))", "socket"),
    ("def add(a, b) return", "SyntaxError"),
])
def test_cheating_and_broken_candidates_fail_with_a_reason(answer, reason):
    score = score_code(answer, MBPP_TESTS, sandbox=SANDBOX)
    assert not score.correct and reason in score.detail


def test_many_candidates_in_parallel_keep_order():
    answers = ["def add(a, b):\n    return a + b", "def add(a, b):\n    return 0"] * 4
    scores = score_code_many(answers, [MBPP_TESTS] * 8, sandbox=SANDBOX, max_workers=4)
    assert [s.correct for s in scores] == [True, False] * 4
    with pytest.raises(ValueError, match="test programs"):
        score_code_many(answers, [MBPP_TESTS], sandbox=SANDBOX)
