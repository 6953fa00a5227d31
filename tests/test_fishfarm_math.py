"""\\boxed{} extraction and MATH answer equivalence, including the awkward cases."""
import pytest

from fishfarm.scoring import extract_math_answer, last_boxed, math_equal, score_math


@pytest.mark.parametrize("text, content", [
    (r"so the answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"\boxed{\left(3, \frac{\pi}{2}\right)}", r"\left(3, \frac{\pi}{2}\right)"),
    (r"We get $\boxed 5$.", "5"),
    (r"\boxed 5.", "5"),
    (r"\fbox{B}", "B"),
    (r"first \boxed{1}, finally \boxed{2}", "2"),
    (r"\boxed{\text{(B)}}", r"\text{(B)}"),
    (r"\boxed{x^{2}+\{1\}}", r"x^{2}+\{1\}"),
    (r"cut off \boxed{\frac{1}{", None),
    (r"\boxedx{3}", None),
    ("no box here", None),
])
def test_last_boxed(text, content):
    assert last_boxed(text) == content


@pytest.mark.parametrize("a, b", [
    (r"\frac{1}{2}", r"\dfrac12"), (r"\frac{1}{2}", "0.5"), (r"\frac{1}{2}", "1/2"),
    ("0.5", r"\tfrac{1}{2}"), (".5", "1/2"), (r"\dfrac{3}{4}", "0.75"),
    (r"5\text{ cm}", "5"), (r"10\text{ cm}^2", "10"), ("5 inches", "5"), (r"\text{odd}", "odd"),
    (r"\$18.00", "18"), (r"90^\circ", "90"), (r"50\%", "50"), ("10{,}000", "10000"),
    ("x = 3", "3"), ("y = 2x + 3", "3 + 2x"), (r"x \in [1, 2]", "[1,2]"),
    ("(1, 2)", "(1,2)"), (r"\left( 1, \frac{1}{2} \right)", "(1, 0.5)"),
    (r"(-\infty, 3]", r"(-\infty,3]"),
    (r"(-\infty,1)\cup(2,\infty)", r"(-\infty, 1) \cup (2, \infty)"),
    (r"\{1,2\}", r"\{2, 1\}"), ("-2, 3", "3, -2"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt3}{2}"), (r"2\sqrt{3}", r"\sqrt{12}"),
    (r"2\pi", r"\pi \cdot 2"), ("2x+1", "1+2x"), ("3", "(3)"), ("2^{10}", "1024"),
])
def test_equivalent(a, b):
    assert math_equal(a, b) and math_equal(b, a)


@pytest.mark.parametrize("a, b", [
    ("x = 3", "4"), ("(2, 1)", "(1, 2)"), ("[1, 2)", "[1, 2]"), (r"(-\infty, 3)", r"(-\infty, 3]"),
    ("(1, 2)", "[1, 2]"), ("(1, 2)", "1, 2"), ("1, 2", "1, 2, 3"), (r"\frac{1}{3}", "0.333"),
    (r"\pi", "3.14159"), ("2x+1", "2x-1"), ("2x", "2y"), (r"\alpha", r"\beta"), ("", "3"),
    ("9^{9^{9}}", "3"), ("abc", "abd"),
])
def test_not_equivalent(a, b):
    assert not math_equal(a, b) and not math_equal(b, a)


def test_scores_a_solution_against_a_math_reference():
    reference = r"The sum is $\frac{2}{4} = \boxed{\frac12}$."
    assert score_math(r"Thus the answer is $\boxed{\dfrac{1}{2}}$.", reference).correct
    assert score_math(r"... so $\boxed{0.5}$", reference).correct
    wrong = score_math(r"$\boxed{\frac{1}{3}}$", reference)
    assert not wrong.correct and wrong.extracted == r"\frac{1}{3}" and r"\frac12" in wrong.detail
    missing = score_math("The answer is one half.", reference)
    assert not missing.correct and "boxed" in missing.detail


def test_minerva_final_answer_format():
    answer = "Final Answer: The final answer is $0.5$. I hope it is correct."
    assert extract_math_answer(answer) == "0.5"
    assert score_math(answer, "1/2").correct
