"""SeqIO bridge: seqio computes the same mixture rates as ours and yields the tasks' examples."""

import pytest

seqio = pytest.importorskip("seqio")

from globmed_jax.data import prompts, seqio_bridge, tasks  # noqa: E402


@pytest.mark.parametrize("mixture", ["globmed_mini", "globmed_mini_t5", "globmed_mini_upweighted"])
def test_seqio_mixture_rates_equal_ours(mixture):
    registered = seqio_bridge.register_mixture(mixture)
    assert registered is seqio.get_mixture_or_task(mixture)
    assert seqio_bridge.register_mixture(mixture) is registered  # idempotent
    ours = tasks.mixture_shares(mixture)
    theirs = seqio_bridge.mixture_shares(mixture)
    assert set(theirs) == set(ours)
    for name, share in ours.items():
        assert theirs[name] == pytest.approx(share, rel=1e-12)
    # Unnormalized rates agree too (seqio computes them with its own mixing_rate_num_examples).
    rates = tasks.get_mixture(mixture).task_rates()
    for t in registered.tasks:
        assert registered.get_rate(t) == pytest.approx(rates[t.name], rel=1e-12)


def test_seqio_capped_rates_equal_ours():
    names = ("globmed_mini_nli_en", "globmed_mini_nli_zu")
    rate = tasks.with_language_multipliers(tasks.NumExamplesRate(scale=0.5, maximum=100, temperature=2.0), {"zu": 3})
    tasks.add_mixture(tasks.Mixture("t_seqio_capped", tuple((n, rate) for n in names)), overwrite=True)
    try:
        seqio_bridge.register_mixture("t_seqio_capped")
        assert seqio_bridge.mixture_shares("t_seqio_capped") == pytest.approx(tasks.mixture_shares("t_seqio_capped"))
    finally:
        tasks.remove("t_seqio_capped")
        seqio.MixtureRegistry.remove("t_seqio_capped")


def test_seqio_dataset_yields_the_task_examples():
    name = "globmed_mini_mcqa_sw"
    seqio_bridge.register_task(name)
    task = seqio.get_mixture_or_task(name)
    assert task.num_input_examples("train") == tasks.get_task(name).num_examples("train")
    ds = task.get_dataset(sequence_length=None, split="train", shuffle=False)
    got = list(ds.as_numpy_iterator())
    records = tasks.get_task(name).records("train")
    assert [g["id"].decode() for g in got] == [r.id for r in records]
    for g, r in zip(got, records):
        assert g["inputs"].decode() == prompts.user_message(r)
        assert g["targets"].decode() == prompts.answer_target(r)
        assert g["language"].decode() == "sw" and g["family"].decode() == "mcqa"
    shuffled = [g["id"].decode() for g in task.get_dataset(sequence_length=None, split="train", shuffle=True,
                                                             seed=0).as_numpy_iterator()]
    assert sorted(shuffled) == sorted(r.id for r in records)
