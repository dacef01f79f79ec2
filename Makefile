# Two commands on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in $(VENV) and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SLUDGE := $(VENV)/bin/sludge
STAMP := $(VENV)/.sludge-installed
# PyTorch with torchvision: this pair installs from the machine's own disk (../shared/infra.md).
TORCH := torch==2.14.1 torchvision==0.29.1
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# No model hub reachable: say so up front so loaders fail fast instead of retrying for a minute.
ifeq ($(shell getent hosts huggingface.co >/dev/null 2>&1 && echo yes),)
export HF_HUB_OFFLINE := 1
endif

DEMO_DIR ?= .demo
DEMO_ENV := SLUDGE_DATA_DIR=$(DEMO_DIR)/data SLUDGE_ENCODER__ON_MISSING_WEIGHTS=random \
	SLUDGE_TRANSCRIBER__MODEL=tiny.en

.PHONY: setup demo test bench clean browser

$(STAMP): pyproject.toml Makefile
	@command -v ffmpeg >/dev/null || { echo "installing ffmpeg (Debian package)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ffmpeg >/dev/null; }
	@# the layout sets burn captions and subtitles in with this font (without it: blocks of the same size)
	@test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || { echo "installing fonts-dejavu-core (Debian package)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq fonts-dejavu-core >/dev/null; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,redis,es,classifier,openvino,serve]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	rm -rf $(DEMO_DIR)/data
	$(SLUDGE) make-composite --demo-set $(DEMO_DIR)/videos --media-dir ../shared/media
	$(DEMO_ENV) $(SLUDGE) index --recursive $(DEMO_DIR)/videos/history
	$(DEMO_ENV) $(SLUDGE) bank add --policy sludge --threshold 0.25 \
		--text "split-screen gameplay under an unrelated video clip"
	$(DEMO_ENV) $(SLUDGE) bank add --policy sludge --text "two unrelated videos stacked on one vertical screen"
	$(DEMO_ENV) $(SLUDGE) bank add --policy sludge --text "picture-in-picture collage of several unrelated feeds"
	$(DEMO_ENV) $(SLUDGE) bank list
	$(DEMO_ENV) $(SLUDGE) check $(DEMO_DIR)/videos/new/composite.mp4
	$(DEMO_ENV) $(SLUDGE) check $(DEMO_DIR)/videos/new/single.mp4
	$(DEMO_ENV) $(SLUDGE) recall --query "split-screen gameplay" --limit 5

# The console's browser tests drive Debian's Chromium (Playwright for Python, its own browser download is
# not used): installed here when missing.
# axe-core (npm) is injected by those tests to check each page's accessibility; kept outside the checkout.
AXE_VERSION := 4.14.1
AXE_DIR ?= $(HOME)/.cache/sludge/axe-core-$(AXE_VERSION)
export SLUDGE_AXE_JS ?= $(AXE_DIR)/node_modules/axe-core/axe.min.js
browser:
	@command -v chromium >/dev/null || { echo "installing chromium (Debian package, for the console's browser tests)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@command -v npm >/dev/null || { echo "installing npm (Debian package, to fetch axe-core)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq npm >/dev/null; }
	@test -f $(SLUDGE_AXE_JS) || npm install --silent --no-audit --no-fund --prefix $(AXE_DIR) axe-core@$(AXE_VERSION)

test: setup browser
	$(VENV)/bin/pytest -q

# Every benchmark under bench/, each with a time limit, into bench/RESULTS.md (a failure is recorded,
# the rest still run). BENCH_QUICK=1: tiny sizes, to check the machinery (the figures mean nothing).
BENCH_QUICK ?=
bench: setup
	$(PY) bench/report.py $(if $(filter-out 0,$(BENCH_QUICK)),--quick)

clean:
	rm -rf $(DEMO_DIR) .data .pytest_cache
