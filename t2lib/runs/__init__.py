"""The steps of an experiment that notebooks and command lines share: load an expert set, score a
split per question, keep and reload a result, sweep and keep the best on validation, write a table,
check a preset's needs, run the notebooks. One module per table of the paper where a step is its own."""
