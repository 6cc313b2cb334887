"""SeqIO bridge: seqio computes the same mixture rates as ours and yields the tasks' examples."""

import pytest

seqio = pytest.importorskip("seqio")

from globmed_jax.data import prompts, seqio_bridge, tasks  # noqa: E402


@pytest.mark.parametrize("name", sorted(tasks.NAMED_MIXTURES))
def test_seqio_mixture_rates_equal_ours(name):
    mixture = tasks.named_mixture(name)
    registered = seqio_bridge.register_mixture(mixture)
    assert registered is seqio.get_mixture_or_task(name)
    assert seqio_bridge.register_mixture(tasks.named_mixture(name)) is registered  # idempotent for an equal value
    ours = mixture.shares()
    theirs = seqio_bridge.mixture_shares(name)
    assert set(theirs) == set(ours)
    for task_name, share in ours.items():
        assert theirs[task_name] == pytest.approx(share, rel=1e-12)
    # Unnormalized rates agree too (seqio computes them with its own mixing_rate_num_examples).
    rates = mixture.task_rates()
    for t in registered.tasks:
        assert registered.get_rate(t) == pytest.approx(rates[t.name], rel=1e-12)


def test_seqio_capped_rates_equal_ours():
    mini_mixture = tasks.globmed_mini()
    members = [mini_mixture.task(n) for n in ("globmed_mini_nli_en", "globmed_mini_nli_zu")]
    rate = tasks.with_language_multipliers(tasks.NumExamplesRate(scale=0.5, maximum=100, temperature=2.0), {"zu": 3})
    capped = tasks.Mixture.of("t_seqio_capped", members, rate)
    try:
        seqio_bridge.register_mixture(capped)
        assert seqio_bridge.mixture_shares("t_seqio_capped") == pytest.approx(capped.shares())
        # Another value under the same name is refused, not silently answered with the old one.
        with pytest.raises(ValueError, match="other contents"):
            seqio_bridge.register_mixture(tasks.Mixture.of("t_seqio_capped", members, 1.0))
    finally:
        seqio.MixtureRegistry.remove("t_seqio_capped")


def test_seqio_dataset_yields_the_task_examples():
    ours = tasks.globmed_mini().task("globmed_mini_mcqa_sw")
    seqio_bridge.register_task(ours)
    task = seqio.get_mixture_or_task(ours.name)
    assert task.num_input_examples("train") == ours.num_examples("train")
    ds = task.get_dataset(sequence_length=None, split="train", shuffle=False)
    got = list(ds.as_numpy_iterator())
    records = ours.records("train")
    assert [g["id"].decode() for g in got] == [r.id for r in records]
    for g, r in zip(got, records):
        assert g["inputs"].decode() == prompts.user_message(r)
        assert g["targets"].decode() == prompts.answer_target(r)
        assert g["language"].decode() == "sw" and g["family"].decode() == "mcqa"
    shuffled = [g["id"].decode() for g in task.get_dataset(sequence_length=None, split="train", shuffle=True,
                                                             seed=0).as_numpy_iterator()]
    assert sorted(shuffled) == sorted(r.id for r in records)
