"""One run of `make reproduce`'s ablation: the demo's base model (configs/demo_base.py)
fine-tuned on GlobMed-mini exactly as configs/demo_globmed.py does, with the weighting and the
data-order seed given on the command line:

    python -m globmed_jax.train --config configs/reproduce.py --config.data.mixture=globmed_mini \\
        --config.data.shuffle_seed=1 --config.run_dir=runs/reproduce/globmed_mini/seed1

Weightings: ``globmed_mini`` (proportional, T=1), ``globmed_mini_t3`` (temperature 3) and
``globmed_mini_upweighted`` (proportional, low-resource languages x4). Seeds vary the data order
(``data.shuffle_seed``) only: ``seed`` would also redraw GlobMed-mini itself, test items included.
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location("demo_globmed", pathlib.Path(__file__).with_name("demo_globmed.py"))
_demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_demo)


def get_config():
    c = _demo.get_config()  # the demo's fine-tune, one setting at a time
    c.run_dir = "runs/reproduce/globmed_mini_t3/seed0"
    return c
