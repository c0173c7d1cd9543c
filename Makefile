# image-dedup-worker: the two commands a user needs are `make demo` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv system-deps test lint typecheck unit demo demo-quarantine bench gpu-kit load eval eval-fetch eval-ci scale constraints clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Debian packages: redis-server (broker for the demo and tests), prometheus (metrics tests), python3-venv,
# chromium (headless: the review gallery's tests look at the page as a person would) and a font for it, and a
# single-node Ceph with its RADOS Gateway (tests/test_ceph.py: RGW's own notifications, live).
system-deps:  ## install the Debian packages the demo and tests start (needs root or sudo)
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	for daemon in ceph-mon ceph-mgr ceph-osd radosgw; do \
	  command -v $$daemon >/dev/null || missing="$$missing $$daemon"; \
	done; \
	command -v ceph >/dev/null || missing="$$missing ceph-common"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the service and its dev tools (pinned by constraints.txt)

lint: venv  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv  ## mypy --strict
	$(BIN)/mypy worker producer tooling tests

test: system-deps venv lint typecheck  ## install everything, then lint, type-check and run the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv  ## only the tests that start no service
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

demo: system-deps venv  ## run the whole service locally on sample photos and print each outcome
	$(BIN)/python -m tooling.demo

demo-quarantine: system-deps venv  ## the demo, moving duplicates to a quarantine bucket instead of tagging
	$(BIN)/python -m tooling.demo --action quarantine

load: system-deps venv  ## a burst of 10,000 notifications through the webhook; prints events/s and the drain rate
	LOAD_EVENTS=10000 $(BIN)/pytest -s -p no:cacheprovider --timeout 3600 tests/test_load.py

bench: system-deps venv  ## end-to-end images/s through the worker vs model-only images/s, as a ratio
	$(BIN)/python -m tooling.bench

gpu-kit:  ## fetch what `make bench` needs on an offline GPU machine (wheels, redis-server) into .gpu-kit
	bash deploy/gpu/kit.sh fetch

$(VENV)/.eval-stamp: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,eval]'
	touch $@

# The held-out corpus (tooling.eval.corpus): Debian packages' pictures, Python packages' samples and rendered
# pages, as corpus.lock.json pins them. Downloads once into data/corpus-cache; later runs are offline.
# All 32 edits of every picture: a fold takes 873 s (tune: 944 sources, 30,208 variants) and 981 s (test) of CPU;
# both folds ran side by side in 19 minutes on two cores, with 10 GB of memory each at the most.
# Every threshold is chosen on the tuning fold (tooling.eval.tail and the reports' sweeps) and the worker's defaults
# hold it; both folds are decided with the worker's own (--worker-thresholds): the test fold's figures are measured,
# not tuned, and the tuning fold's sit beside them at the same thresholds. Each report also gives the rule's choice.
EVAL_STAGES ?= exact,perceptual
EVAL_ARGS   ?= --hashes '' --inputs ''

eval-fetch: system-deps $(VENV)/.eval-stamp  ## fetch (or check) the held-out corpus into data/corpus (downloads once)
	$(BIN)/python -m tooling.eval.corpus fetch --root data/corpus

eval: eval-fetch  ## the quality harness on both corpus folds, and the README's table of the two (docs/quality/)
	$(BIN)/python -m tooling.eval --corpus data/corpus --fold tune --out docs/quality/tune --stages $(EVAL_STAGES) --worker-thresholds $(EVAL_ARGS)
	$(BIN)/python -m tooling.eval --corpus data/corpus --fold test --out docs/quality/test --stages $(EVAL_STAGES) --worker-thresholds $(EVAL_ARGS)
	$(BIN)/python -m tooling.eval.folds docs/quality

eval-ci: system-deps $(VENV)/.eval-stamp  ## the corpus's small CI subset, fetched and measured (~2 min)
	$(BIN)/python -m tooling.eval.corpus fetch --root data/corpus-ci --subset ci
	$(BIN)/python -m tooling.eval --corpus data/corpus-ci --out data/eval-ci --stages exact,perceptual --hashes '' --inputs ''

# Index cost and behaviour at 10k, 100k and 1M originals (tooling.scale): fingerprints of the corpus's pictures and
# of pictures derived from them are made once into data/scale-cache (1M: ~35 min on two cores, 16 GB), then each
# size is filled into a fresh Milvus Lite server and measured. SCALE_ARGS e.g. --sizes 10000,100000.
SCALE_ARGS ?=

scale: eval-fetch  ## the index at 10k, 100k and 1M originals: bytes, inserts/s, decide latency, recall (docs/scale/)
	$(BIN)/python -m tooling.scale --out docs/scale $(SCALE_ARGS)

constraints: venv  ## re-pin constraints.txt from the current .venv
	{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^image-dedup-worker'; } > constraints.new
	mv constraints.new constraints.txt

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
