"""\\boxed{} extraction and MATH answer equivalence, including the awkward cases."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fishfarm.scoring import (extract_math_answer, is_equiv_official, last_boxed, math_equal,
                              normalize_math_answer, score_math, symbolic)
from fishfarm.scoring.math_official import extract_answer_official


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
    # Forms the kit's own evaluator missed and math-verify reads.
    (r"\binom{5}{2}", "10"), ("5!", "120"), (r"\log_2 8", "3"), ("a/b", r"\frac{a}{b}"),
    ("n(n+1)/2", r"\frac{n(n+1)}{2}"), (r"\frac{n^2+n}{2}", "n(n+1)/2"), (r"\sin x", r"\sin(x)"),
    ("e^2", r"\exp(2)"), ("3+4i", "4i+3"), ("3 + 4i", "3+4i"), ("x^2+2x+1", "(x+1)^2"),
    (r"\frac{3}{2}\pi", r"\frac{3\pi}{2}"), (r"\cos\frac{\pi}{3}", r"\frac12"),
    (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}"), (r"\frac ab", "a/b"),
    (r"\frac{1}{2004!}", r"\frac1{2004!}"),
    # Matrices with and without spaces around & and the \\ row separator.
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}", r"\begin{pmatrix}1&0\\0&1\end{pmatrix}"),
    (r"\begin{pmatrix} 1/5 & 4/5 \\ 0 & 1 \end{pmatrix}",
     r"\begin{pmatrix}\frac{1}{5}&\frac45\\0&1\end{pmatrix}"),
    # Thin spaces, LaTeX spaces, words and lists written out.
    (r"14,\!400", "14400"), (r"10\ 000", "10000"), (r"\text{Evelyn}", "Evelyn"),
    (r"\text{(C)}", "C"), (r"12\text{ and }13", "12, 13"), (r"7, -2, \text{ and } -5", "-5, -2, 7"),
    (r"8\sqrt{3} \text { square inches}", r"8\sqrt3"),
    (r"\text{Monday}, \text{Friday}", "Friday, Monday"),
])
def test_equivalent(a, b):
    assert math_equal(a, b) and math_equal(b, a)


@pytest.mark.parametrize("a, b", [
    ("x = 3", "4"), ("(2, 1)", "(1, 2)"), ("[1, 2)", "[1, 2]"), (r"(-\infty, 3)", r"(-\infty, 3]"),
    ("(1, 2)", "[1, 2]"), ("(1, 2)", "1, 2"), ("1, 2", "1, 2, 3"), (r"\frac{1}{3}", "0.333"),
    (r"\pi", "3.14159"), ("2x+1", "2x-1"), ("2x", "2y"), (r"\alpha", r"\beta"), ("", "3"),
    ("9^{9^{9}}", "3"), ("abc", "abd"),
    # math-verify alone equates these: a percentage is in the reference's own unit, and an
    # ordered pair is no list of two solutions.
    (r"25\%", r"\frac{1}{4}"), (r"25\%", "0.25"), ("(1, 2)", "1, 2"),
    # Words are words, not products of letters.
    (r"\text{dog}", r"\text{god}"), (r"\text{even}", r"\text{odd}"),
    (r"\binom{5}{2}", "20"), ("5!", "24"), ("3+4i", "3-4i"), (r"\sin x", r"\cos x"),
    ("e^2", r"\exp(3)"), (r"\log_2 8", "4"), ("n(n+1)/2", "n(n-1)/2"),
    (r"\begin{pmatrix} -5 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ -5 \end{pmatrix}"),
    (r"\begin{pmatrix} 1 & 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    ("(x+1)^{1000}", "x^{1000}+1"), ("2^{2^{2^{2^{2}}}}", "65536"),
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


@pytest.mark.parametrize("answer, normalized", [
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"),
    (r"10\ 000", "10000"), (r"\sin x", r"\sin x"), (r"\pi r^2", r"\pi r^2"),
    (r"\left( 3, \dfrac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"), (r"\rightarrow", r"\rightarrow"),
])
def test_normalization_keeps_row_separators_and_needed_spaces(answer, normalized):
    assert normalize_math_answer(answer) == normalized


@pytest.mark.parametrize("latex", [
    "9^{9^{9}}", "2^{100000}", "(x+1)^{201}", "100000!", "(10^{9})!", r"\binom{1000000}{500000}",
    "1" * 1001, "x+" * 200,
])
def test_answers_sympy_might_not_finish_on_are_refused(latex):
    assert symbolic.too_costly(latex)
    assert symbolic.symbolic_equal(latex, "3") is None


@pytest.mark.parametrize("latex", [
    r"\frac{1}{2004!}", "2^{9999}", "7z^{96}(4z+1)", r"\binom{5}{2}",
    r"\begin{pmatrix} 4033 & -8064 \\ 2016 & -4031 \end{pmatrix}",
])
def test_ordinary_answers_reach_sympy(latex):
    assert symbolic.too_costly(latex) is None


def test_scoring_in_threads_never_hangs():
    """Task scores with a thread pool, where math-verify's signal alarm cannot work."""
    pairs = [("9^{9^{9}}", "3", False), ("(x+1)^{1000}", "x^{1000}+1", False),
             (r"\binom{5}{2}", "10", True), (r"\sin x", r"\sin(x)", True), ("5!", "120", True)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=3) as pool:
        verdicts = list(pool.map(lambda p: math_equal(p[0], p[1]), pairs))
        timeouts = list(pool.map(lambda _: symbolic._timeout(), range(3)))
    assert verdicts == [p[2] for p in pairs]
    assert time.perf_counter() - start < 10
    assert timeouts == [None] * 3  # no alarm off the main thread
    assert threading.current_thread() is threading.main_thread()
    assert symbolic._timeout() == symbolic.TIMEOUT_S


@pytest.mark.parametrize("reference, answer, verdict", [
    (r"\frac{1}{2}", "0.5", True), ("1/2", r"\dfrac12", True), ("50", "0.50", True),
    ("50", "0.5", False),  # "0.5" is rewritten \frac{1}{2} before the numeric check
    (r"25\%", "0.25", True),  # the official numeric check also accepts x100 and /100
    ("2*x+1", "1+2*x", True), ("2x+1", "1+2x", False),  # no implicit products in parse_expr
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", True),
    (r"5\text{ cm}", "5", True), ("x=3", "3", True), (r"\binom{5}{2}", "10", False),
    ("(1,2)", "(1, 2)", True), ("(1,2)", "[1,2]", False), ("3", "4", False),
    ("factorial(5)", "120", False),  # a SymPy function: refused, never evaluated
    ("__import__('os')", "0", False), (r"3\sqrt", r"3\sqrt", True),
])
def test_official_is_equiv(reference, answer, verdict):
    assert is_equiv_official(reference, answer) is verdict


def test_official_mode_reads_answers_as_the_official_code():
    assert extract_answer_official("Work.\nThe answer is: 42.\nMore") == "42"
    assert extract_answer_official(r"so $\boxed{\frac{1}{2}}$") == r"\frac{1}{2}"
    assert extract_answer_official(r"\boxed 5") is None and extract_answer_official("5") is None
    reference = r"Hence $\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}$."
    answer = r"$\boxed{\begin{pmatrix}1\\2\end{pmatrix}}$"
    assert score_math(answer, reference, mode="official").correct
    assert score_math(answer, reference).correct
    assert not score_math(r"$\boxed{\binom{5}{2}}$", "10", mode="official").correct
    assert score_math(r"$\boxed{\binom{5}{2}}$", "10", mode="kit").correct
    with pytest.raises(ValueError, match="'kit' or 'official'"):
        score_math("1", "1", mode="paper")
