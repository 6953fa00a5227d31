"""t2lib: the library the Transformer² kit's notebooks call, in tiers; imports only go down them
(`tests/test_layout.py` checks).

core/ (the method):
    models (resolve and load a base model) · svd (cached SVD of the target matrices) · experts (z
    vectors as shareable, verified files) · mixing (z' = Σ α z, and what makes experts mixable) ·
    spectra (statistics of σ, and what an expert did to it) · svf (apply / switch / restore experts
    on a live model, keeping attached backends in sync) · fingerprint
methods/ (what learns, what adapts):
    reinforce (the trainer loop: REINFORCE or next-token, over a `Trainable`) · trainable (the
    interface, and `SVFParams`) · lora (the LoRA baseline: `LoRAParams`, adapter files, PEFT) · cem
    (few-shot search over mixing weights α) · dispatch (reading the classification prompt) ·
    strategies/ (pass 1: base, prompt, cls-expert, few-shot; one module each and a registry) ·
    transformer2 (the two-pass model)
views/ (what a reader sees):
    plots (all matplotlib) · figures (files named after the paper's, `make figures`) · explorer
    (notebook 07's widgets) · inspection (notebook 01's scaling study) · paper (the paper's tables,
    intervals)
runs/ (the steps of an experiment that notebooks and command lines share):
    store (kept results under build/) · scoring (1/0 per question) · expert_sets · tables ·
    training (Table 1, SVF and LoRA) · adaptation (Table 2) · ablations (Table 4) · transfer
    (Table 5) · baseline · preflight (a preset's needs, the plan) · notebooks (papermill)
cli/ (`python -m t2lib <command>`): one small module per command that parses, calls runs/ and prints.
shared, at the top: session (model + SVD + backend, loaded once) · presets · paths · atomic ·
    runinfo · logs · samples · hardware.

Tasks, scoring, suites, generation backends and the sandbox live in `fishfarm`.
"""

from t2lib.logs import configure_logging

configure_logging()
