"""The kit's command lines, one small module per command: each parses its arguments, calls the
library (`t2lib.runs` for the steps of an experiment) and prints. Run them as
`python -m t2lib <command> ...` (`t2lib/__main__.py`); no command module imports another."""

COMMANDS = {
    "train": "train SVF experts (Table 1)",
    "lora": "train the LoRA baseline (Tables 1 and 2 +LoRA)",
    "baseline": "the base model on every task of a preset",
    "adapt": "the adaptation strategies on the unseen tasks (Tables 2 and 3)",
    "ablations": "Table 4, and Table 5 with --shuffle-control",
    "export": "SVF experts (or a mixture) as PEFT LoRA adapters; --rank-sweep: accuracy against rank",
    "figures": "redraw the figures from written results (no model)",
    "notebooks": "run the notebooks headlessly with papermill",
    "reproduce": "check a preset's needs, train what it lacks, run every notebook",
}
