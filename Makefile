# `make test` and `make repro` work on a fresh machine: they create .venv and install first.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp

# Quick version of the study: Fashion-MNIST (offline), 600 steps per run, 2 seeds, as a DVC experiment.
QUICK   ?= -S data.dataset=fashion_mnist -S scale.steps=600 -S scale.seeds=2 -S log.log_freq=2000 \
	   -S hessian.images=100 -S 'hessian.steps=[2000,11500]' -S 'hessian.updates=[2000]' \
	   -S interpolation.images=10000
DVC      = PATH="$(abspath $(BIN)):$$PATH" DVC_NO_ANALYTICS=1 dvc

.PHONY: install test repro quick imagenet clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The whole study (dvc.yaml) with params.yaml: data -> training stages -> report.
repro: $(STAMP)
	$(DVC) repro

quick: $(STAMP)
	$(DVC) exp run $(QUICK)

# The ImageNet family (imagenet/dvc.yaml; needs data/imagenet and GPUs), then the report with its columns.
imagenet: $(STAMP)
	$(DVC) repro imagenet/dvc.yaml
	$(DVC) repro -f report

clean:
	rm -rf $(VENV) .pytest_cache
