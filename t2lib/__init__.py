"""t2lib: the library the Transformer² kit's notebooks call.

models (resolve and load a base model) · svd (cached SVD of target matrices) · experts (z vectors
as shareable files, mixing) · svf (apply / switch / restore experts on a live model) · dispatch
(pass 1) · inspection and plots (notebook 01) · baseline (base model accuracy) · presets ·
notebooks (papermill runner) · runinfo, atomic, paths (results that carry their provenance).
"""

from t2lib.logs import configure_logging

configure_logging()
