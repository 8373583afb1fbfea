# dogcls: `make demo` runs the main job on the embedded data set, `make test` runs every check.
# Both create .venv and install what they need on a fresh machine (Python 3.11, registries only).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/pip install --disable-pip-version-check -c constraints.txt
DEMO_RUN := eda-clipart
export PYTHONDONTWRITEBYTECODE := 1
export MPLBACKEND := Agg

.PHONY: install demo test check-clean check-export nbtest pytest bench

$(STAMP): setup.py settings.ini constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -q torch==2.14.1 torchvision==0.29.1
	$(PIP) -q -e '.[dev]'
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

demo: install
	mkdir -p reports/$(DEMO_RUN)
	$(BIN)/papermill nbs/eda.ipynb reports/$(DEMO_RUN)/eda.ipynb -p run_name $(DEMO_RUN) --cwd nbs --no-progress-bar
	@test -f reports/$(DEMO_RUN)/report.html
	@echo "Report written: $(CURDIR)/reports/$(DEMO_RUN)/report.html"

# notebooks are committed clean (nbdev_clean changes nothing)
check-clean: install
	$(BIN)/nbdev_clean
	git diff --exit-code --stat -- nbs || { echo 'nbs/ was not clean: run nbdev_clean and commit'; exit 1; }

# the library is generated from the notebooks (nbdev_export changes nothing, adds nothing)
check-export: install
	$(BIN)/nbdev_export
	git diff --exit-code --stat -- dogcls || { echo 'dogcls/ differs from nbs/: run nbdev_export and commit'; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- dogcls)" || { git status --short -- dogcls; echo 'nbdev_export made files that are not committed'; exit 1; }

nbtest: install
	$(BIN)/nbdev_test --timing

pytest: install
	$(BIN)/pytest -q tests

test: check-clean check-export nbtest pytest

bench: install
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/dedup.py
