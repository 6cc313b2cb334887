"""Mesh construction, the rules table, and sharded forward == single-device forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from globmed_jax import sharding
from globmed_jax.models import from_pretrained
from hf_utils import build_hf_model, relative_max_error


def test_make_mesh_shapes_and_errors():
    mesh = sharding.make_mesh(2, 2, 2)
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert dict(sharding.make_mesh(data=2, fsdp=-1, tensor=1).shape)["fsdp"] == 4
    with pytest.raises(ValueError, match="3 x"):
        sharding.make_mesh(3, 1, 1)
    with pytest.raises(ValueError, match="not divisible"):
        sharding.make_mesh(3, -1, 1)
    with pytest.raises(ValueError, match="at most one"):
        sharding.make_mesh(-1, -1, 1)


def test_logical_rules_map_to_mesh_axes():
    assert sharding.logical_to_spec(("embed", "mlp")) == P("fsdp", "tensor")
    assert sharding.logical_to_spec(("layers", "embed", "heads", "head_dim")) == P(None, "fsdp", "tensor", None)
    assert sharding.logical_to_spec(("activation_batch", "activation_length")) == P(("data", "fsdp"), None)
    with pytest.raises(KeyError, match="no rule"):
        sharding.logical_to_spec(("not_an_axis",))
    custom = (("embed", None), ("mlp", ("fsdp", "tensor")))
    assert sharding.logical_to_spec(("embed", "mlp"), custom) == P(None, ("fsdp", "tensor"))


def test_indivisible_dimensions_are_replicated():
    mesh = sharding.make_mesh(2, 2, 2)
    # 3 KV heads cannot be split 2 ways: that dimension is replicated, the others still sharded.
    assert sharding.spec_for_shape((64, 3, 8), ("embed", "kv_heads", "head_dim"), mesh) == P("fsdp", None, None)
    assert sharding.spec_for_shape((6, 10), ("activation_batch", "activation_length"), mesh) == P("data", None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("qwen3")
    build_hf_model("qwen3_untied_gqa2").save_pretrained(directory)
    return directory


def test_sharded_forward_equals_single_device(checkpoint):
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 16)), jnp.int32)
    single, _ = from_pretrained(checkpoint, dtype="float32")
    mesh = sharding.make_mesh(2, 2, 2)
    sharded, cfg = from_pretrained(checkpoint, dtype="float32", mesh=mesh)

    graphdef, state = nnx.split(sharded)
    forward = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t))
    got = forward(state, tokens)
    assert relative_max_error(got, single(tokens)) < 1e-5
    assert got.sharding.spec[0] == ("data", "fsdp")


def test_parameter_shardings_follow_the_rules_table(checkpoint):
    mesh = sharding.make_mesh(2, 2, 2)
    model, cfg = from_pretrained(checkpoint, dtype="float32", mesh=mesh)
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert len(flat) >= 10
    for path, var in flat.items():
        axes = var.get_metadata()["logical_axes"]
        expected = sharding.spec_for_shape(var.shape, axes, mesh)
        assert var[...].sharding.spec == expected, path
    # Spot checks against the table itself (all these dims divide the mesh).
    assert flat[("layers", "mlp", "gate_proj", "kernel")][...].sharding.spec == P(None, "fsdp", "tensor")
    assert flat[("layers", "attn", "q_proj", "kernel")][...].sharding.spec == P(None, "fsdp", "tensor", None)
    assert flat[("layers", "attn", "o_proj", "kernel")][...].sharding.spec == P(None, "tensor", None, "fsdp")
    assert flat[("embed",)][...].sharding.spec == P("tensor", "fsdp")
    assert flat[("lm_head",)][...].sharding.spec == P("fsdp", "tensor")


def test_shard_model_moves_a_fresh_model(checkpoint):
    from globmed_jax.models import CausalLM, load_config

    cfg = load_config(checkpoint, dtype="float32")
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    before = np.asarray(model(jnp.ones((2, 4), jnp.int32)))
    mesh = sharding.make_mesh(1, 4, 2)
    sharding.shard_model(model, mesh)
    assert model.layers.mlp.up_proj.kernel[...].sharding.spec == P(None, "fsdp", "tensor")
    assert relative_max_error(model(jnp.ones((2, 4), jnp.int32)), before) < 1e-5
