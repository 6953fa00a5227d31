"""t2lib: the library the Transformer² kit's notebooks call, in four tiers.

core (the method):
    models (resolve and load a base model) · svd (cached SVD of the target matrices) ·
    experts (z vectors as shareable files, mixing) · svf (apply / switch / restore experts on a
    live model, keeping attached backends in sync)
methods and strategies (what learns, what adapts):
    reinforce (SVF trainer: REINFORCE or next-token) · lora (the LoRA baseline on the same
    trainer, PEFT) · cem (few-shot search over mixing weights α) ·
    dispatch (reading the classification prompt) · strategies/ (pass 1: base, prompt,
    cls-expert, few-shot; one module each and a registry) · transformer2 (the two-pass model)
runners (command lines, `python -m t2lib.<name>`):
    train (Table 1) · lora (Table 1 +LoRA) · baseline (base model on every task) · adapt (Table 2) ·
    ablations (Table 4) · figures
    (`make figures`) · notebooks (papermill runner)
support:
    session (model + SVD + backend, loaded once) · presets (smoke, tiny, rehearsal, paper, paper-70b) · plots (all
    matplotlib) · paper (the paper's tables, intervals) · explorer (notebook 07's views and
    widgets) · inspection (notebook 01) · samples (evaluation subsets, shots, batches) ·
    hardware (native bf16) · logs (INFO messages shown unless logging is configured) · runinfo,
    atomic, paths, fingerprint (results that carry their provenance)

Tasks, scoring, suites, generation backends and the sandbox live in `fishfarm`.
"""

from t2lib.logs import configure_logging

configure_logging()
