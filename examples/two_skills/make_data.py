"""Writes the worked example's data files from the tiny suite's seeded generators (no hub needed).

    python examples/two_skills/make_data.py      # rewrites the .jsonl files beside this script

The files show the three ways a suite file can give a task's data: `add_word.jsonl` is one file
(the suite draws train, validation and test from it), `where_person/` has a train and a test file
(validation is drawn from train), and the unseen tasks have a test file each.
"""
import json
from pathlib import Path

from fishfarm.suites.tiny.generators import add_word, sub_word, where_crowd, where_person

HERE = Path(__file__).resolve().parent
TEST_ROWS = 60  # test questions of each unseen task (the first 60 of the generator's test split)


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "category"}) + "\n" for r in rows))
    print(f"{path.relative_to(HERE)}: {len(rows)} rows")


if __name__ == "__main__":
    write(HERE / "add_word.jsonl", add_word("train") + add_word("validation") + add_word("test"))
    write(HERE / "where_person" / "train.jsonl", where_person("train") + where_person("validation"))
    write(HERE / "where_person" / "test.jsonl", where_person("test")[:TEST_ROWS])
    write(HERE / "sub_word_test.jsonl", sub_word("test")[:TEST_ROWS])
    write(HERE / "where_crowd_test.jsonl", where_crowd("test")[:TEST_ROWS])
