"""Scorers: each turns a model's answer and a reference into a `fishfarm.types.Score`."""
from fishfarm.scoring.boxed import last_boxed
from fishfarm.scoring.choice import extract_choice, score_category, score_choice, score_name
from fishfarm.scoring.code import build_program, extract_code, score_code, score_code_many
from fishfarm.scoring.exact import extract_exact, score_exact
from fishfarm.scoring.math_equiv import (MathMode, extract_math_answer, math_equal,
                                         normalize_math_answer, score_math)
from fishfarm.scoring.math_official import is_equiv_official
from fishfarm.scoring.numbers import extract_final_number, parse_number, score_number

__all__ = [
    "MathMode", "build_program", "extract_choice", "extract_code", "extract_exact", "extract_final_number",
    "extract_math_answer", "is_equiv_official", "last_boxed", "math_equal",
    "normalize_math_answer", "parse_number",
    "score_category", "score_choice", "score_code", "score_code_many", "score_exact", "score_math", "score_name", "score_number",
]
