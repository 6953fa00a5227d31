"""CITATION.cff (read by code hosts for "Cite this repository") and CITATION.bib state the same facts:
the kit's title and version (pyproject.toml's) and the paper it reproduces."""
from __future__ import annotations

import re
import tomllib

import yaml

from t2lib.paths import REPO_ROOT

CFF = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
BIB = (REPO_ROOT / "CITATION.bib").read_text()
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def bib_entries(text: str) -> dict[str, dict[str, str]]:
    """Returns {key: {field: value}} of a BibTeX file, braces removed from the values."""
    entries = {}
    for kind, key, body in re.findall(r"@(\w+)\{([^,]+),(.*?)\n\}", text, re.S):
        fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?\s*$", body, re.M))
        entries[key] = {"@": kind, **{k: v.replace("{", "").replace("}", "") for k, v in fields.items()}}
    return entries


def test_cff_has_the_fields_the_format_requires():
    assert CFF["cff-version"] == "1.2.0"
    for field in ("message", "title", "authors"):
        assert CFF.get(field), f"CITATION.cff lacks {field}"
    for author in CFF["authors"] + CFF["preferred-citation"]["authors"]:
        assert author.get("family-names") or author.get("name"), author
    assert CFF["preferred-citation"]["type"] and CFF["preferred-citation"]["title"]


def test_cff_and_bib_agree_on_the_kit():
    kit = next(e for e in bib_entries(BIB).values() if e["@"] == "software")
    assert CFF["title"] == kit["title"]
    assert CFF["version"] == kit["version"] == VERSION, "the version is pyproject.toml's in both files"
    assert [a["name"] for a in CFF["authors"]] == [kit["author"]]


def test_cff_and_bib_agree_on_the_paper():
    paper = next(e for e in bib_entries(BIB).values() if e["@"] == "inproceedings")
    cited = CFF["preferred-citation"]
    assert cited["title"] == paper["title"] and str(cited["year"]) == paper["year"]
    names = [f"{a['family-names']}, {a['given-names']}" for a in cited["authors"]]
    assert " and ".join(names) == paper["author"]
    assert cited["url"] == paper["url"] and cited["collection-title"] == paper["booktitle"]
    assert f"arXiv:{paper['eprint']}" in [i["value"] for i in cited["identifiers"]]


def test_the_bib_parser_reads_what_it_compares():
    entries = bib_entries("@misc{k,\n  title = {A {B} c},\n  year  = {2025}\n}\n")
    assert entries == {"k": {"@": "misc", "title": "A B c", "year": "2025"}}
