# Two commands set everything up on a fresh machine:
#   make demo   -> creates .venv, installs ExplainFix, runs the main job on a built-in default
#   make test   -> creates .venv, installs ExplainFix with test extras, runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/demo

.PHONY: install demo test test-data bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Real reference files that ship inside PyPI wheels (CheXpert train.csv, one DSB-2018 image).
test-data: $(VENV)/.installed
	$(PY) -m pip download -q --no-deps --only-binary=:all: -d .cache/wheels torchxrayvision==1.5.7 stardist==0.9.2 || echo "warning: reference wheels not downloaded; tests that need them are skipped"

demo: $(VENV)/.installed test-data
	$(VENV)/bin/explainfix demo --out $(OUT)

test: $(VENV)/.installed test-data
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .cache out
