"""Task / mixture registry: rate formulas (proportional, capped, temperature, per-language), shares."""

import dataclasses
import json

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


@pytest.fixture
def scratch():
    """Names registered by a test are removed afterwards."""
    names = []
    yield names
    for name in names:
        tasks.remove(name)


def test_globmed_mini_registered():
    names = [tasks.mini_task_name(f, lang) for f in mini.FAMILIES for lang in DEFAULT_LANGUAGES]
    assert set(names) <= set(tasks.list_tasks())
    assert {"globmed_mini", "globmed_mini_t5", "globmed_mini_upweighted"} <= set(tasks.list_mixtures())
    t = tasks.get_task("globmed_mini_nli_yo")
    assert (t.language, t.dataset, t.family) == ("yo", "globmed_mini_nli", "nli")
    assert t.num_examples("train") == N_LOW and t.num_examples("test") == len(mini.FACTS) * CFG.test_variants
    assert all(r.language == "yo" and r.family == "nli" for r in t.records("train"))
    assert isinstance(tasks.get_mixture_or_task("globmed_mini"), tasks.Mixture)
    assert isinstance(tasks.get_mixture_or_task("globmed_mini_mcqa_en"), tasks.Task)
    with pytest.raises(KeyError, match="no_such_mixture"):
        tasks.get_mixture_or_task("no_such_mixture")
    with pytest.raises(ValueError, match="splits"):
        t.records("validation")


def test_proportional_shares_equal_example_counts():
    shares = tasks.mixture_shares("globmed_mini")
    total = n_languages(DEFAULT_LANGUAGES)
    for name, share in shares.items():
        task = tasks.get_task(name)
        assert share == pytest.approx(n_train(task.family, task.language) / total, rel=1e-12)
    assert sum(shares.values()) == pytest.approx(1.0)


def _low_share(name):
    return sum(v for k, v in tasks.language_shares(name).items() if k in LOW)


def test_temperature_changes_low_resource_share_exactly_as_formula():
    def formula(t):
        lo = n_languages(LOW, t)
        return lo / (n_languages(set(DEFAULT_LANGUAGES) - LOW, t) + lo)

    t1, t5 = _low_share("globmed_mini"), _low_share("globmed_mini_t5")
    assert t1 == pytest.approx(formula(1.0), rel=1e-12)
    assert t5 == pytest.approx(formula(5.0), rel=1e-12)
    assert t5 > 2 * t1  # the point of temperature sampling


def test_language_multipliers_and_upweighted_mixture():
    up = _low_share("globmed_mini_upweighted")
    m = tasks.LOW_RESOURCE_MULTIPLIER
    lo = n_languages(LOW, multiplier=m)
    assert up == pytest.approx(lo / (n_languages(set(DEFAULT_LANGUAGES) - LOW) + lo), rel=1e-12)
    rate = tasks.with_language_multipliers(tasks.rate_proportional(), {"sw": 3.0})
    rate = tasks.with_language_multipliers(rate, {"yo": 2.0})
    assert dict(rate.language_multipliers) == {"sw": 3.0, "yo": 2.0}
    assert rate(tasks.get_task("globmed_mini_mcqa_sw")) == 3.0 * N_LOW
    assert rate(tasks.get_task("globmed_mini_mcqa_en")) == N_HIGH


def test_capped_and_seqio_formula_order(scratch):
    # maximum applies after scale and before temperature: (min(2 * n, 100)) ** (1 / 2)
    r = tasks.NumExamplesRate(scale=2.0, maximum=100, temperature=2.0)
    assert r(tasks.get_task("globmed_mini_mcqa_en")) == pytest.approx(100 ** 0.5)
    assert r(tasks.get_task("globmed_mini_mcqa_sw")) == pytest.approx(min(2 * N_LOW, 100) ** 0.5)
    names = ("globmed_mini_mcqa_en", "globmed_mini_mcqa_sw")
    tasks.add_mixture(tasks.Mixture("t_capped", tuple((n, tasks.rate_capped(60)) for n in names)))
    scratch.append("t_capped")
    assert tasks.mixture_shares("t_capped") == pytest.approx(
        {names[0]: 60 / (60 + min(N_LOW, 60)), names[1]: min(N_LOW, 60) / (60 + min(N_LOW, 60))})
    assert tasks.rate_temperature(3.0).temperature == 3.0


def test_explicit_rates_default_rate_and_nested_mixtures(scratch):
    tasks.add_mixture(tasks.Mixture("t_fixed", (("globmed_mini_nli_en", 3), ("globmed_mini_nli_am", None)),
                                    default_rate=1.0))
    scratch.append("t_fixed")
    assert tasks.mixture_shares("t_fixed") == pytest.approx({"globmed_mini_nli_en": 0.75, "globmed_mini_nli_am": 0.25})
    # SeqIO semantics: a sub-mixture's tasks share its rate in proportion to their own rates.
    tasks.add_mixture(tasks.Mixture("t_nested", (("t_fixed", 1.0), ("globmed_mini_nli_en", 1.0))))
    scratch.append("t_nested")
    assert tasks.mixture_shares("t_nested") == pytest.approx(
        {"globmed_mini_nli_en": 0.5 * 0.75 + 0.5, "globmed_mini_nli_am": 0.5 * 0.25})
    assert tasks.mixture_shares("globmed_mini_nli_en") == {"globmed_mini_nli_en": 1.0}


def test_registry_errors(scratch):
    with pytest.raises(ValueError, match="already registered"):
        tasks.add_task(tasks.get_task("globmed_mini_mcqa_en"))
    # Bad mixtures fail at registration and leave nothing registered.
    with pytest.raises(KeyError):
        tasks.add_mixture(tasks.Mixture("t_bad", (("does_not_exist", 1.0),)))
    with pytest.raises(ValueError, match=">= 0"):
        tasks.add_mixture(tasks.Mixture("t_bad", (("globmed_mini_mcqa_en", -1.0),)))
    assert "t_bad" not in tasks.list_mixtures()
    tasks.add_mixture(tasks.Mixture("t_zero", (("globmed_mini_mcqa_en", 0.0),)))
    scratch.append("t_zero")
    with pytest.raises(ValueError, match="positive"):
        tasks.mixture_shares("t_zero")


def test_preprocessors_map_and_filter(scratch):
    base = tasks.get_task("globmed_mini_yes_no_maybe_en")
    upper = lambda r: dataclasses.replace(r, question=r.question.upper())  # noqa: E731
    no_maybe = lambda r: None if r.answer == "maybe" else r  # noqa: E731
    t = tasks.add_task(dataclasses.replace(base, name="t_pre", preprocessors=(no_maybe, upper)))
    scratch.append("t_pre")
    got = t.records("train")
    want = [r for r in base.records("train") if r.answer != "maybe"]
    assert len(got) == len(want) == 2 * N_HIGH // 3
    assert [r.question for r in got] == [r.question.upper() for r in want]


def test_jsonl_source_reads_importer_layout(tmp_path, scratch):
    cfg = mini.MiniConfig(languages=("en", "zu"), train_variants=1, test_variants=1)
    mini.write_jsonl(tmp_path, cfg)
    names = tasks.register_jsonl_tasks(tmp_path, [("globmed_mini_mcqa", "zu", "mcqa")], prefix="t_jsonl_")
    scratch.extend(names)
    assert names == ("t_jsonl_globmed_mini_mcqa_zu",)
    t = tasks.get_task(names[0])
    want = [r for r in mini.generate(cfg, "test") if r.dataset == "globmed_mini_mcqa" and r.language == "zu"]
    assert t.records("test") == want and t.metric_fns == ("accuracy",)
    # A flat <dir>/<split>.jsonl is read directly.
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "train.jsonl").write_text(
        "\n".join(json.dumps(r.to_json()) for r in want) + "\n", encoding="utf-8")
    assert tasks.JsonlSource(str(flat), language="zu")("train") == want
    (flat / "test.jsonl").write_text('{"id": "x", "bogus": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="test.jsonl:1"):
        tasks.JsonlSource(str(flat))("test")
