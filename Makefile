# `make test` and `make repro` work on a fresh machine: they create .venv and install first.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp

# The main job's settings (override: make repro DATASET=fashion_mnist STEPS=1000).
# Schedules scale with STEPS as in the protocol: FREQ = STEPS/117 (100 at 11,719 steps); pruning
# from 30*FREQ to 70*FREQ every FREQ, mask updates every FREQ, logging every 2*FREQ.
DATASET ?= mnist
STEPS   ?= 11719
SEED    ?= 0
RUNS    ?= results/runs/main
FREQ    := $(shell n=$$(( $(STEPS) / 117 )); echo $$(( n > 0 ? n : 1 )))
TRAIN    = $(BIN)/sparsebench train --data.dataset $(DATASET) --optim.steps $(STEPS) --seed $(SEED) \
           --prune.begin-step $$((30 * $(FREQ))) --prune.end-step $$((70 * $(FREQ))) --prune.frequency $(FREQ) \
           --dst.update-freq $(FREQ) --dst.begin-step $(FREQ) --log.log-freq $$((2 * $(FREQ)))

.PHONY: install test repro clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# Protocol §0 for one seed: prune → lottery, scratch (ours init), RigL (ours init) from the pruning mask.
repro: $(STAMP)
	$(TRAIN) --method prune --out $(RUNS)/prune
	$(TRAIN) --method lottery --mask.source $(RUNS)/prune --out $(RUNS)/lottery
	$(TRAIN) --method scratch --init.scheme ours --mask.source $(RUNS)/prune --out $(RUNS)/scratch-ours
	$(TRAIN) --method rigl --init.scheme ours --mask.source $(RUNS)/prune --out $(RUNS)/rigl-ours

clean:
	rm -rf $(VENV) .pytest_cache
