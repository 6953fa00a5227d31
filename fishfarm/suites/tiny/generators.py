"""Seeded generators of small task families that SmolLM2-135M can partly solve.

Each family enumerates a fixed pool of distinct problems (keyed by the numbers or operation that
define them, so two problems that differ only in names or wording never straddle splits),
shuffles it with a fixed seed, and cuts it into train / validation / test. The cut is the same on
every machine: the splits are disjoint by construction and stable across versions of the kit
as long as the pool definition below does not change.

Families:
- `add_word` (math, training): one-step addition word problems ("Tom has 12 apples and gets 30 more").
- `sub_word` (math, unseen): one-step subtraction word problems: another operation, same world.
- `fn_arith` (code, training): write `f(x)` that adds / subtracts / multiplies by a constant.
- `fn_string` (code, unseen): write `f(s)` for a simple string operation: another data type.
- `where_person` (reasoning, training): a short story of people moving between rooms, then
  "Where is Mia?": the place of her last move (bAbI task 1, one supporting fact).
- `where_crowd` (reasoning, unseen): the same question about six moves of four people: longer
  stories with more distractors, as ARC-Challenge is to ARC-Easy.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

SPLITS = ("train", "validation", "test")
SEED = 2025

NAMES = ("Tom", "Anna", "Liam", "Mia", "Noah", "Emma", "Lucas", "Sofia", "Omar", "Yuki", "Ravi", "Lena")
ITEMS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cookies", "stamps", "shells", "cards")
ADD_TEMPLATES = (
    "{n} has {a} {i}. {p} gets {b} more {i}. How many {i} does {n} have now?",
    "{n} had {a} {i} and then found {b} more. How many {i} does {n} have in total?",
    "There are {a} {i} in a box. {n} puts {b} more {i} in the box. How many {i} are in the box now?",
    "{n} collected {a} {i} on Monday and {b} {i} on Tuesday. How many {i} did {n} collect altogether?",
)
SUB_TEMPLATES = (
    "{n} has {a} {i}. {p} gives away {b} {i}. How many {i} does {n} have now?",
    "{n} had {a} {i} and lost {b} of them. How many {i} does {n} have left?",
    "There are {a} {i} in a box. {n} takes {b} {i} out of the box. How many {i} are in the box now?",
    "{n} bought {a} {i} and used {b} of them. How many {i} are left?",
)
PRONOUN = {"Tom": "He", "Liam": "He", "Noah": "He", "Lucas": "He", "Omar": "He", "Ravi": "He"}

FUNCTION_NAMES = ("transform", "compute", "apply_rule", "calc", "process", "update_value")
# One-step operations the base model mostly gets right, and rephrased or two-step ones it often
# gets wrong (writes x - k for "k minus x", forgets the second step): see the baseline table in docs/tasks.md for the base model's accuracy.
# Each entry: (description, expected value, reference solution as a Python expression). Tests
# check the reference solutions against the expected values, so the two cannot drift apart.
ARITH_OPS: dict[str, tuple[str, Callable[[int, int], int], str]] = {
    "add": ("adds {k} to x", lambda x, k: x + k, "x + {k}"),
    "rsub": ("returns {k} minus x", lambda x, k: k - x, "{k} - x"),
    "muladd": ("multiplies x by {k} and then adds 1", lambda x, k: x * k + 1, "x * {k} + 1"),
    "sqadd": ("returns the square of x plus {k}", lambda x, k: x * x + k, "x ** 2 + {k}"),
    "mod": ("returns the remainder of x divided by {k}", lambda x, k: x % k, "x % {k}"),
    "addmul": ("adds {k} to x and then multiplies the sum by 2", lambda x, k: (x + k) * 2, "(x + {k}) * 2"),
    "floordiv": ("returns x divided by {k}, rounded down to a whole number", lambda x, k: x // k, "x // {k}"),
    "dblsub": ("doubles x and then subtracts {k}", lambda x, k: 2 * x - k, "2 * x - {k}"),
}
LETTERS = "abcdexyzqk"
# (operation id, parameter) -> (description, function of s, reference solution expression).
# Parameters make the pool large enough for disjoint splits; every entry is a distinct problem.
STRING_OPS: dict[tuple[str, object], tuple[str, Callable[[str], object], str]] = {
    **{("repeat", k): (f"repeats the string s {k} times", lambda s, k=k: s * k, f"s * {k}") for k in range(2, 7)},
    **{("prefix", k): (f"returns the first {k} characters of the string s", lambda s, k=k: s[:k], f"s[:{k}]") for k in range(1, 7)},
    **{("suffix", k): (f"returns the last {k} characters of the string s", lambda s, k=k: s[-k:], f"s[-{k}:]") for k in range(1, 7)},
    **{("length", k): (f"returns the length of the string s plus {k}", lambda s, k=k: len(s) + k, f"len(s) + {k}") for k in range(1, 21)},
    **{("append", (c, k)): (f"appends the letter '{c}' to the end of the string s {k} times",
                            lambda s, c=c, k=k: s + c * k, f"s + {c!r} * {k}") for c in LETTERS[:5] for k in range(1, 5)},
    **{("prepend", c): (f"puts the letter '{c}' in front of the string s", lambda s, c=c: c + s, f"{c!r} + s") for c in LETTERS},
    **{("count", c): (f"returns how many times the letter '{c}' occurs in the string s",
                      lambda s, c=c: s.count(c), f"s.count({c!r})") for c in LETTERS},
    **{("replace", (c, d)): (f"replaces every letter '{c}' in the string s with '{d}'",
                             lambda s, c=c, d=d: s.replace(c, d), f"s.replace({c!r}, {d!r})") for c in "aeo" for d in "xyz"},
    **{("remove", c): (f"removes every letter '{c}' from the string s", lambda s, c=c: s.replace(c, ""), f"s.replace({c!r}, '')") for c in LETTERS},
    **{("startswith", c): (f"returns True if the string s starts with the letter '{c}', else False",
                           lambda s, c=c: s.startswith(c), f"s.startswith({c!r})") for c in LETTERS},
    **{("endswith", c): (f"returns True if the string s ends with the letter '{c}', else False",
                         lambda s, c=c: s.endswith(c), f"s.endswith({c!r})") for c in LETTERS},
    **{("number", k): (f"returns the string s followed by the number {k}", lambda s, k=k: s + str(k), f"s + str({k})") for k in range(0, 41)},
    **{("wrap", c): (f"returns the string s with the letter '{c}' added at both ends", lambda s, c=c: c + s + c,
                     f"{c!r} + s + {c!r}") for c in LETTERS},
    ("upper", None): ("returns the string s in upper case", str.upper, "s.upper()"),
    ("lower", None): ("returns the string s in lower case", str.lower, "s.lower()"),
    ("reverse", None): ("returns the string s reversed", lambda s: s[::-1], "s[::-1]"),
    ("strip", None): ("removes the spaces at both ends of the string s", str.strip, "s.strip()"),
}
STRING_INPUTS = ("hello", "abc", "Python", "a", "data science", "kayak")
TRAIN_SIZES = {"train": 256, "validation": 48, "test": 120}
UNSEEN_SIZES = {"train": 0, "validation": 48, "test": 120}  # unseen tasks are never trained on


def _split(keys: Sequence, split: str, sizes: dict[str, int], *, seed: int = SEED) -> list:
    """Returns the keys of one split: the pool shuffled with `seed`, cut in SPLITS order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
    keys = list(keys)
    random.Random(seed).shuffle(keys)
    need = sum(sizes.values())
    if len(keys) < need:
        raise ValueError(f"pool of {len(keys)} problems is smaller than the {need} the splits need")
    start = sum(sizes[s] for s in SPLITS[: SPLITS.index(split)])
    return keys[start: start + sizes[split]]


def _word_problems(family: str, templates: Sequence[str], pairs: Sequence[tuple[int, int]],
                   op: Callable[[int, int], int], split: str, sizes: dict[str, int]) -> list[dict]:
    out = []
    for a, b in _split(pairs, split, sizes):
        rng = random.Random(f"{family}:{a}:{b}")  # wording depends only on the problem's key
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        text = rng.choice(templates).format(n=name, p=PRONOUN.get(name, "She"), a=a, b=b, i=item)
        out.append({"id": f"{family}-{a}-{b}", "question": text, "answer": str(op(a, b)), "category": "math"})
    return out


def add_word(split: str) -> list[dict]:
    """Returns one-step addition word problems: {"id", "question", "answer", "category"}."""
    pairs = [(a, b) for a in range(3, 60) for b in range(2, 40)]
    return _word_problems("add_word", ADD_TEMPLATES, pairs, lambda a, b: a + b, split, TRAIN_SIZES)


def sub_word(split: str) -> list[dict]:
    """Returns one-step subtraction word problems (the answer is positive)."""
    pairs = [(a, b) for a in range(6, 30) for b in range(2, a - 1)]  # small numbers: 135M can subtract those
    return _word_problems("sub_word", SUB_TEMPLATES, pairs, lambda a, b: a - b, split, UNSEEN_SIZES)


def _tests(name: str, calls: Sequence[tuple[object, object]]) -> str:
    return "\n".join(f"assert {name}({arg!r}) == {want!r}" for arg, want in calls)


def fn_arith(split: str) -> list[dict]:
    """Returns "write f(x) that adds/subtracts/multiplies by k" problems with assert tests.

    Records: {"id", "question", "tests", "entry_point", "category"}.
    """
    out = []
    for op, k in _split([(op, k) for op in ARITH_OPS for k in range(2, 60)], split, TRAIN_SIZES):
        desc, fn, expr = ARITH_OPS[op]
        fname = random.Random(f"fn_arith:{op}:{k}").choice(FUNCTION_NAMES)
        question = f"Write a Python function `{fname}(x)` that {desc.format(k=k)} and returns the result."
        out.append({"id": f"fn_arith-{op}-{k}", "question": question, "entry_point": fname, "category": "code",
                    "tests": _tests(fname, [(x, fn(x, k)) for x in (0, 1, 7, -3)]),
                    "solution": f"def {fname}(x):\n    return {expr.format(k=k)}\n"})
    return out


def fn_string(split: str) -> list[dict]:
    """Returns "write f(s) that does a string operation" problems with assert tests."""
    out = []
    for key in _split(list(STRING_OPS), split, UNSEEN_SIZES):
        desc, fn, expr = STRING_OPS[key]
        fname = random.Random(f"fn_string:{key}").choice(FUNCTION_NAMES)
        question = f"Write a Python function `{fname}(s)` that {desc}."
        out.append({"id": f"fn_string-{key[0]}-{key[1]}".replace(" ", ""), "question": question,
                    "entry_point": fname, "category": "code",
                    "tests": _tests(fname, [(s, fn(s)) for s in STRING_INPUTS]),
                    "solution": f"def {fname}(s):\n    return {expr}\n"})
    return out


PLACES = ("kitchen", "garden", "office", "hallway", "bedroom", "bathroom", "garage", "park")
MOVES = ("went to", "moved to", "travelled to", "walked to", "ran to")
STORY_POOL = 4000  # seeds per family; each seed is one story


def _moves(rng: random.Random, people: Sequence[str], n: int) -> tuple[list[str], dict[str, str]]:
    """Returns n "X went to the Y." sentences and where each person who moved ends up."""
    where, sentences = {}, []
    for _ in range(n):
        who = rng.choice(people)
        place = rng.choice([p for p in PLACES if p != where.get(who)])
        where[who] = place
        sentences.append(f"{who} {rng.choice(MOVES)} the {place}.")
    return sentences, where


def _where_is(family: str, people: int, moves: int, split: str, sizes: dict[str, int]) -> list[dict]:
    """Returns stories of `moves` moves by `people` people, each asking where one of them is."""
    out, seen = [], set()
    for seed in _split(range(STORY_POOL), split, sizes):
        rng = random.Random(f"{family}:{seed}")
        sentences, where = _moves(rng, rng.sample(NAMES, people), moves)
        who = rng.choice(sorted(where))
        question = f"{' '.join(sentences)} Where is {who}?"
        if question in seen:  # two seeds that drew the same story: keep the first
            continue
        seen.add(question)
        out.append({"id": f"{family}-{seed}", "question": question, "answer": where[who], "places": list(PLACES),
                    "category": "reasoning"})
    return out


def where_person(split: str) -> list[dict]:
    """Returns four-sentence stories of three people moving, asking where one of them is now.

    Records: {"id", "question", "answer" (a place), "places" (every place a story can name),
    "category"}. Who is asked about moved at least once; when they moved twice, the first
    place named for them is wrong.
    """
    return _where_is("where_person", 3, 4, split, TRAIN_SIZES)


def where_crowd(split: str) -> list[dict]:
    """Returns six-sentence stories of four people moving, asking where one of them is now.

    Records as in `where_person`.
    """
    return _where_is("where_crowd", 4, 6, split, UNSEEN_SIZES)


FAMILIES: dict[str, Callable[[str], list[dict]]] = {
    "add_word": add_word, "sub_word": sub_word, "fn_arith": fn_arith, "fn_string": fn_string,
    "where_person": where_person, "where_crowd": where_crowd,
}
