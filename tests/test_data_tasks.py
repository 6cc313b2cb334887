"""Tasks and mixtures as values: rate formulas (proportional, capped, temperature, per-language), shares."""

import dataclasses
import json
import subprocess
import sys

import pytest

from globmed_jax.data import mini, tasks
from globmed_jax.data.languages import DEFAULT_LANGUAGES, low_resource

CFG = mini.MiniConfig()
N_HIGH = len(mini.FACTS) * CFG.train_variants
N_LOW = round(CFG.low_resource_fraction * N_HIGH)
LOW = set(low_resource(DEFAULT_LANGUAGES))
N_FAM = len(mini.FAMILIES)


def n_train(family: str, language: str) -> int:
    """GlobMed-mini training items of one (family, language)."""
    n = len(mini.FACTS) * mini.items_per_fact(family, "train", CFG)
    return round(CFG.low_resource_fraction * n) if language in LOW else n


def n_languages(languages, t: float = 1.0, multiplier: float = 1.0) -> float:
    """Sum over families and ``languages`` of the (multiplied) counts to the power 1/t."""
    return sum((multiplier * n_train(f, lang)) ** (1 / t) for f in mini.FAMILIES for lang in languages)


MINI = tasks.globmed_mini()


def _task(name):
    return MINI.task(name)


def test_globmed_mini_tasks_and_named_mixtures():
    names = [tasks.mini_task_name(f, lang) for f in mini.FAMILIES for lang in DEFAULT_LANGUAGES]
    assert list(MINI.task_names) == names
    assert set(tasks.NAMED_MIXTURES) == {"globmed_mini", "globmed_mini_t5", "globmed_mini_upweighted"}
    for name in tasks.NAMED_MIXTURES:
        mixture = tasks.named_mixture(name)
        assert mixture.name == name and mixture.task_names == MINI.task_names
    t = _task("globmed_mini_nli_yo")
    assert (t.language, t.dataset, t.family) == ("yo", "globmed_mini_nli", "nli")
    assert t.num_examples("train") == N_LOW and t.num_examples("test") == len(mini.FACTS) * CFG.test_variants
    assert all(r.language == "yo" and r.family == "nli" for r in t.records("train"))
    single = tasks.named_mixture("globmed_mini_mcqa_en")
    assert single.task_names == ("globmed_mini_mcqa_en",) and single.shares() == {"globmed_mini_mcqa_en": 1.0}
    with pytest.raises(KeyError, match="no_such_mixture"):
        tasks.named_mixture("no_such_mixture")
    with pytest.raises(ValueError, match="splits"):
        t.records("dev")
    # The dev (validation) split for few-shot prompts: every language, dev_variants per fact.
    assert t.num_examples("validation") == len(mini.FACTS) * CFG.dev_variants


def test_mixtures_are_values_built_from_the_config():
    # Equal configs give equal mixtures (and equal tasks share their record caches); another
    # config gives another mixture, with nothing global to overwrite.
    assert tasks.globmed_mini() == MINI and hash(tasks.globmed_mini()) == hash(MINI)
    small = tasks.globmed_mini(mini.MiniConfig(languages=("en", "sw"), train_variants=1))
    assert small.task_names == tuple(tasks.mini_task_name(f, lang) for f in mini.FAMILIES for lang in ("en", "sw"))
    assert small.task("globmed_mini_mcqa_en").num_examples("train") == len(mini.FACTS)
    assert _task("globmed_mini_mcqa_en").num_examples("train") == N_HIGH  # the default one is untouched
    # Importing builds nothing: no task or mixture object at module level, no data generated.
    code = ("import globmed_jax.data.tasks as t, globmed_jax.data.pipeline, globmed_jax.data.mini as m; "
            "vals = [v for v in vars(t).values()] + [x for v in vars(t).values() if isinstance(v, dict) "
            "for x in v.values()]; "
            "assert not [v for v in vals if isinstance(v, (t.Task, t.Mixture))], vals; "
            "assert m._generate.cache_info().currsize == 0")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_proportional_shares_equal_example_counts():
    shares = MINI.shares()
    total = n_languages(DEFAULT_LANGUAGES)
    for name, share in shares.items():
        task = _task(name)
        assert share == pytest.approx(n_train(task.family, task.language) / total, rel=1e-12)
    assert sum(shares.values()) == pytest.approx(1.0)


def _low_share(mixture):
    return sum(v for k, v in mixture.language_shares().items() if k in LOW)


def test_temperature_changes_low_resource_share_exactly_as_formula():
    def formula(t):
        lo = n_languages(LOW, t)
        return lo / (n_languages(set(DEFAULT_LANGUAGES) - LOW, t) + lo)

    t1, t5 = _low_share(MINI), _low_share(tasks.globmed_mini_t5())
    assert t1 == pytest.approx(formula(1.0), rel=1e-12)
    assert t5 == pytest.approx(formula(5.0), rel=1e-12)
    assert t5 > 2 * t1  # the point of temperature sampling


def test_language_multipliers_and_upweighted_mixture():
    up = _low_share(tasks.globmed_mini_upweighted())
    m = tasks.LOW_RESOURCE_MULTIPLIER
    lo = n_languages(LOW, multiplier=m)
    assert up == pytest.approx(lo / (n_languages(set(DEFAULT_LANGUAGES) - LOW) + lo), rel=1e-12)
    rate = tasks.with_language_multipliers(tasks.rate_proportional(), {"sw": 3.0})
    rate = tasks.with_language_multipliers(rate, {"yo": 2.0})
    assert dict(rate.language_multipliers) == {"sw": 3.0, "yo": 2.0}
    assert rate(_task("globmed_mini_mcqa_sw")) == 3.0 * N_LOW
    assert rate(_task("globmed_mini_mcqa_en")) == N_HIGH


def test_capped_and_seqio_formula_order():
    # maximum applies after scale and before temperature: (min(2 * n, 100)) ** (1 / 2)
    r = tasks.NumExamplesRate(scale=2.0, maximum=100, temperature=2.0)
    assert r(_task("globmed_mini_mcqa_en")) == pytest.approx(100 ** 0.5)
    assert r(_task("globmed_mini_mcqa_sw")) == pytest.approx(min(2 * N_LOW, 100) ** 0.5)
    names = ("globmed_mini_mcqa_en", "globmed_mini_mcqa_sw")
    capped = tasks.Mixture.of("t_capped", [_task(n) for n in names], tasks.rate_capped(60))
    assert capped.shares() == pytest.approx(
        {names[0]: 60 / (60 + min(N_LOW, 60)), names[1]: min(N_LOW, 60) / (60 + min(N_LOW, 60))})
    assert tasks.rate_temperature(3.0).temperature == 3.0


def test_explicit_rates_and_nested_mixtures():
    en, am = _task("globmed_mini_nli_en"), _task("globmed_mini_nli_am")
    fixed = tasks.Mixture("t_fixed", ((en, 3), (am, 1.0)))
    assert fixed.shares() == pytest.approx({en.name: 0.75, am.name: 0.25})
    # SeqIO semantics: a sub-mixture's tasks share its rate in proportion to their own rates,
    # and a task reached twice adds its rates.
    nested = tasks.Mixture("t_nested", ((fixed, 1.0), (en, 1.0)))
    assert nested.shares() == pytest.approx({en.name: 0.5 * 0.75 + 0.5, am.name: 0.5 * 0.25})
    assert nested.task_names == (en.name, am.name)
    assert nested.language_shares() == pytest.approx({"en": 0.5 * 0.75 + 0.5, "am": 0.5 * 0.25})
    assert tasks.single_task(en).shares() == {en.name: 1.0}


def test_bad_mixtures_fail_when_built():
    en = _task("globmed_mini_mcqa_en")
    with pytest.raises(TypeError, match="not a Task or Mixture"):
        tasks.Mixture("t_bad", (("globmed_mini_mcqa_en", 1.0),))
    with pytest.raises(ValueError, match=">= 0"):
        tasks.Mixture("t_bad", ((en, -1.0),))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            tasks.Mixture("t_bad", ((en, bad),))
    with pytest.raises(TypeError, match="must be a number"):
        tasks.Mixture("t_bad", ((en, "1"),))
    with pytest.raises(ValueError, match="no members"):
        tasks.Mixture("t_bad", ())
    other = dataclasses.replace(en, language="sw")  # same name, different task
    with pytest.raises(ValueError, match="two different tasks"):
        tasks.Mixture("t_bad", ((en, 1.0), (other, 1.0)))
    sub = tasks.single_task(en)
    with pytest.raises(ValueError, match="numeric rate"):
        tasks.Mixture("t_bad", ((sub, tasks.rate_proportional()),))
    with pytest.raises(ValueError, match="positive"):
        tasks.Mixture("t_zero", ((en, 0.0),)).shares()
    with pytest.raises(KeyError, match="no task"):
        sub.task("globmed_mini_mcqa_sw")


def test_preprocessors_map_and_filter():
    base = _task("globmed_mini_yes_no_maybe_en")
    upper = lambda r: dataclasses.replace(r, question=r.question.upper())  # noqa: E731
    no_maybe = lambda r: None if r.answer == "maybe" else r  # noqa: E731
    t = dataclasses.replace(base, name="t_pre", preprocessors=(no_maybe, upper))
    got = t.records("train")
    want = [r for r in base.records("train") if r.answer != "maybe"]
    assert len(got) == len(want) == 2 * N_HIGH // 3
    assert [r.question for r in got] == [r.question.upper() for r in want]


def test_jsonl_source_reads_importer_layout(tmp_path):
    cfg = mini.MiniConfig(languages=("en", "zu"), train_variants=1, test_variants=1)
    mini.write_jsonl(tmp_path, cfg)
    (t,) = tasks.jsonl_tasks(tmp_path, [("globmed_mini_mcqa", "zu", "mcqa")], prefix="t_jsonl_")
    assert t.name == "t_jsonl_globmed_mini_mcqa_zu"
    want = [r for r in mini.generate(cfg, "test") if r.dataset == "globmed_mini_mcqa" and r.language == "zu"]
    assert t.records("test") == want and t.metric_fns == ("accuracy",)
    # The whole tree as a temperature mixture over the chosen languages, families read from the files.
    mixture = tasks.jsonl_mixture(tmp_path, "t_tree", 3.0, ("zu",))
    assert mixture.name == "t_tree"
    assert {(x.dataset, x.language, x.family) for x in mixture.tasks().values()} == {
        (mini.dataset_name(f), "zu", f) for f in mini.FAMILIES}
    assert all(rate.temperature == 3.0 for _, rate in mixture.members)
    with pytest.raises(FileNotFoundError, match="sw"):
        tasks.jsonl_mixture(tmp_path, "t_tree", 3.0, ("sw",))
    # A flat <dir>/<split>.jsonl is read directly.
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "train.jsonl").write_text(
        "\n".join(json.dumps(r.to_json()) for r in want) + "\n", encoding="utf-8")
    assert tasks.JsonlSource(str(flat), language="zu")("train") == want
    (flat / "test.jsonl").write_text('{"id": "x", "bogus": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="test.jsonl:1"):
        tasks.JsonlSource(str(flat))("test")
