# dogcls: `make demo` runs the main job on the embedded data set, `make test` runs every check.
# Both create .venv and install what they need on a fresh machine (Python 3.11, registries only).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/pip install --disable-pip-version-check -c constraints.txt
PM := $(BIN)/papermill --no-progress-bar --cwd nbs
# the demo's three models: EfficientNet-Lite0/1/2 with offline ImageNet weights, frozen at the resolution they were
# trained at, their features computed once, an MLP head per fold (DEMO_ARGS, and DEMO_ARGS_<arch> for one of them;
# chosen from the accuracy/time frontier of bench/frontier.py, see the README)
DEMO_ARCHS := efficientnet_lite0 efficientnet_lite1 efficientnet_lite2
DEMO_ARGS := -p size full -p freeze backbone -p head mlp -p head_dropout 0.3 -p epochs 15
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
export PYTHONDONTWRITEBYTECODE := 1
export MPLBACKEND := Agg

.PHONY: install demo demo-quick pipeline browser test lint check-clean check-export check-readme readme docs lab nbtest pytest bench bench-scale bench-smoke
PORT ?= 8888
IP ?= 127.0.0.1
comma := ,
space := $(empty) $(empty)

$(STAMP): setup.py settings.ini constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -q torch==2.14.1 torchvision==0.29.1
	$(PIP) -q -e '.[dev,trackers]'
	$(BIN)/pip check
	$(BIN)/python -m ipykernel install --sys-prefix --name dogcls --display-name dogcls >/dev/null
	touch $(STAMP)

install: $(STAMP)

# the full default pipeline on the embedded data set: EDA, dedup, three pretrained models, label issues, ensemble, index
demo: install
	$(MAKE) --no-print-directory pipeline SUFFIX= TRAIN_ARGS=

# the same pipeline in a few minutes: 3 folds, 1 epoch, the cpu presets' sizes (numbers are smoke-test numbers)
demo-quick: install
	$(MAKE) --no-print-directory pipeline SUFFIX=-quick TRAIN_ARGS="-p folds 3 -p epochs 1 -p limit_batches 3 -p size cpu"

pipeline:
	mkdir -p reports/eda-clipart$(SUFFIX) reports/dedup-clipart$(SUFFIX) reports/ensemble$(SUFFIX)
	$(PM) nbs/eda.ipynb reports/eda-clipart$(SUFFIX)/eda.ipynb -p run_name eda-clipart$(SUFFIX)
	$(PM) nbs/dedup.ipynb reports/dedup-clipart$(SUFFIX)/dedup.ipynb -p run_name dedup-clipart$(SUFFIX)
	$(foreach a,$(DEMO_ARCHS),mkdir -p reports/demo-$(a)$(SUFFIX) && \
	  $(PM) nbs/train.ipynb reports/demo-$(a)$(SUFFIX)/train.ipynb -p arch $(a) -p run_name demo-$(a)$(SUFFIX) \
	    -p dedup_decisions reports/dedup-clipart$(SUFFIX)/decisions.csv $(DEMO_ARGS) $(DEMO_ARGS_$(a)) $(TRAIN_ARGS) && ) true
	mkdir -p reports/clean$(SUFFIX)
	$(PM) nbs/clean.ipynb reports/clean$(SUFFIX)/clean.ipynb -p run_name clean$(SUFFIX) -p runs '["demo-efficientnet_lite0$(SUFFIX)"]'
	$(PM) nbs/ensemble.ipynb reports/ensemble$(SUFFIX)/ensemble.ipynb -p run_name ensemble$(SUFFIX) \
	  -p runs '[$(subst $(space),$(comma),$(foreach a,$(DEMO_ARCHS),"demo-$(a)$(SUFFIX)"))]'
	@test -f reports/ensemble$(SUFFIX)/report.html
	@echo "Report written: $(CURDIR)/reports/ensemble$(SUFFIX)/report.html"
	@echo "All runs: $(CURDIR)/reports/index.html"

# the documentation site in _docs/ from the notebooks (nbdev's processing, Sphinx + MyST-NB; no Quarto), links crawled;
# the library notebooks are executed for their outputs, one thread per worker, and kept in _docs_cache/ until they change
docs: install
	$(ONE_THREAD) $(BIN)/python tools/docs.py site --out _docs

# README.md is written from nbs/index.ipynb
readme: install
	$(BIN)/python tools/docs.py readme

# JupyterLab from .venv with the kernel "dogcls" (PORT=8888 IP=127.0.0.1 by default; a taken port: the next free one)
lab: install
	$(BIN)/python tools/lab.py --port $(PORT) --ip $(IP)

# headless Chromium for the browser test (Debian packages)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }

# notebooks are committed clean (nbdev_clean changes nothing)
check-clean: install
	$(BIN)/nbdev_clean
	git diff --exit-code --stat -- nbs || { echo 'nbs/ was not clean: run nbdev_clean and commit'; exit 1; }

# the library is generated from the notebooks (nbdev_export changes nothing, adds nothing)
check-export: install
	$(BIN)/nbdev_export
	git diff --exit-code --stat -- dogcls || { echo 'dogcls/ differs from nbs/: run nbdev_export and commit'; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- dogcls)" || { git status --short -- dogcls; echo 'nbdev_export made files that are not committed'; exit 1; }

# README.md is what nbs/index.ipynb gives
check-readme: install
	$(BIN)/python tools/docs.py readme --check

# checks run as several processes of one thread each (nbdev_test's workers, pytest-xdist's, the benchmark scripts):
# torch's default of a thread per core in every process oversubscribes the cores, several times over
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

nbtest: install
	$(ONE_THREAD) $(BIN)/nbdev_test --timing

# a worker per core (pytest-xdist); a test file stays on one worker, so its module fixtures are made once; the files
# start longest first (tests/conftest.py's SLOWEST_FIRST, kept in that order); the slowest twelve tests are listed at the
# end (what make test spends its time on)
pytest: install browser
	$(ONE_THREAD) DOGCLS_REQUIRE_BROWSER=1 $(BIN)/pytest -q tests -n auto --dist loadfile --no-loadscope-reorder --durations=12

# every check, one after the other; the seconds of each step are printed at the end
TEST_STEPS := install lint check-clean check-export check-readme nbtest pytest bench-smoke
test:
	@times=''; for step in $(TEST_STEPS); do start=$$(date +%s); $(MAKE) --no-print-directory $$step || exit 1; \
	  times="$$times $$step $$(( $$(date +%s) - start )) s,"; done; echo "make test passed; seconds per step:$${times%,}"

# ruff's rules (ruff.toml: pyflakes, bugbear, import order, line length) on the notebooks, the library, the tests, the
# benchmarks and the tools: no finding; and the library's layers (.importlinter): no module imports one above its own
lint: install
	$(BIN)/ruff check nbs dogcls tests bench tools
	$(BIN)/lint-imports --no-cache

# every benchmark script in its tiny mode (seconds each, on the embedded set): they cannot rot unseen; their figures mean nothing
BENCH_SMOKE := adversarial augment dedup dedup_sets features frontier gpu loader noise presets scale train_loop
# (a script per core at a time; each one's output in /tmp/dogcls-bench-<name>.log, shown when it fails)
bench-smoke: install
	@printf '%s\n' $(BENCH_SMOKE) | $(ONE_THREAD) xargs -P "$$(nproc)" -I{} sh -c '$(BIN)/python bench/{}.py --smoke \
	  > /tmp/dogcls-bench-{}.log 2>&1 && echo "bench/{}.py --smoke" || \
	  { tail -30 /tmp/dogcls-bench-{}.log; echo "bench/{}.py --smoke failed"; exit 1; }'
	@test "$$(ls bench/*.py | xargs -n1 basename | sed 's/\.py$$//' | sort | tr '\n' ' ')" = "$$(echo $(BENCH_SMOKE) | tr ' ' '\n' | sort | tr '\n' ' ')" || \
	  { echo 'bench/ has a script that bench-smoke does not run (or the reverse): add it to BENCH_SMOKE with a --smoke mode'; exit 1; }

bench: install
	$(BIN)/python bench/loader.py
	@test -d /usr/share/icons/oxygen/base || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq oxygen-icon-theme; }
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/augment.py
	$(BIN)/python bench/train_loop.py
	$(BIN)/python bench/adversarial.py

# the whole pipeline at the reference competition's size (500 classes, 15k/10k images; the data set is built once from
# Debian's openclipart-png into ~/.cache/dogcls): prints time, peak memory and growth per step. Run it alone on the machine.
bench-scale: install
	@test -d /usr/share/openclipart/png || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openclipart-png; }
	$(BIN)/python bench/scale.py
