"""Hostile weight files: every malformed safetensors file, escaping index, integer or non-finite
weight and tied/untied conflict is one WeightFileError naming the file and tensor; the GGUF
converter never destroys an existing export."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from globmed_jax.models import CheckpointError, WeightFileError, from_pretrained
from hf_utils import build_hf_model

EMBED = "model.embed_tokens.weight"
NORM = "model.norm.weight"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    directory = tmp_path_factory.mktemp("untied")
    build_hf_model("qwen3_untied_gqa2").save_pretrained(directory)
    return directory


@pytest.fixture()
def checkpoint(pristine, tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    for f in pristine.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


def _header(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write_header(path, header, data):
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def _edit_header(path, edit):
    header, data = _header(path)
    edit(header)
    _write_header(path, header, data)


def _refused(checkpoint, *needles):
    with pytest.raises(WeightFileError) as info:
        from_pretrained(checkpoint, dtype="float32")
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


def test_intact_checkpoint_loads(checkpoint):
    model, cfg = from_pretrained(checkpoint, dtype="float32")
    assert cfg.num_layers == 3


@pytest.mark.parametrize("length", [2**62, 10**9])
def test_impossible_header_length(checkpoint, length):
    st = checkpoint / "model.safetensors"
    raw = st.read_bytes()
    st.write_bytes(struct.pack("<Q", length) + raw[8:])
    _refused(checkpoint, str(st), "header length")


def test_header_not_json(checkpoint):
    st = checkpoint / "model.safetensors"
    header, data = _header(st)
    blob = json.dumps(header).encode()
    st.write_bytes(struct.pack("<Q", len(blob)) + b"{" * len(blob) + data)
    _refused(checkpoint, str(st), "not valid JSON")


def test_file_shorter_than_its_length_prefix(checkpoint):
    (checkpoint / "model.safetensors").write_bytes(b"\x01\x02")
    _refused(checkpoint, "model.safetensors", "8-byte header length")


def test_truncated_file_names_the_last_tensor(checkpoint):
    st = checkpoint / "model.safetensors"
    header, data = _header(st)
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    _write_header(st, header, data[:-100])
    _refused(checkpoint, str(st), repr(last), "truncated")


def test_offsets_out_of_range(checkpoint):
    def edit(h):
        begin, end = h[NORM]["data_offsets"]
        h[NORM]["data_offsets"] = [begin + 10**9, end + 10**9]
    _edit_header(checkpoint / "model.safetensors", edit)
    _refused(checkpoint, "model.safetensors", repr(NORM), "only")


def test_overlapping_tensors(checkpoint):
    def edit(h):
        h[NORM]["data_offsets"] = list(h[EMBED]["data_offsets"][:1]) * 2
        h[NORM]["data_offsets"][1] += 4 * 64
    _edit_header(checkpoint / "model.safetensors", edit)
    _refused(checkpoint, "model.safetensors", "overlap", repr(NORM))


def test_shape_disagrees_with_byte_range(checkpoint):
    _edit_header(checkpoint / "model.safetensors", lambda h: h[NORM].update(shape=[65]))
    _refused(checkpoint, "model.safetensors", repr(NORM), "needs")


def test_unknown_dtype(checkpoint):
    _edit_header(checkpoint / "model.safetensors", lambda h: h[NORM].update(dtype="F19"))
    _refused(checkpoint, "model.safetensors", repr(NORM), "unknown dtype 'F19'")


def test_integer_weights_are_refused(checkpoint):
    st = checkpoint / "model.safetensors"
    tensors = load_file(st)
    tensors[NORM] = np.ones(64, np.int32)
    save_file(tensors, st)
    _refused(checkpoint, "model.safetensors", NORM, "I32", "non-float")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights_are_refused_unless_allowed(checkpoint, bad):
    st = checkpoint / "model.safetensors"
    tensors = load_file(st)
    name = "model.layers.2.mlp.down_proj.weight"
    tensors[name][3, 5] = bad
    save_file(tensors, st)
    _refused(checkpoint, str(st), repr(name), "1 non-finite")
    model, _ = from_pretrained(checkpoint, dtype="float32", allow_nonfinite=True)
    assert not np.isfinite(np.asarray(model.layers.mlp.down_proj.kernel[...])).all()


def test_shape_mismatch_is_reported(checkpoint):
    st = checkpoint / "model.safetensors"
    tensors = load_file(st)
    tensors[NORM] = np.ones(63, np.float32)
    save_file(tensors, st)
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight: expected \(64,\), found \(63,\)"):
        from_pretrained(checkpoint)


def test_tied_config_with_lm_head_tensor_is_refused(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (checkpoint / "config.json").write_text(json.dumps(config))
    _refused(checkpoint, "lm_head.weight", "tie_word_embeddings")


def _shard(checkpoint, weight_map):
    """Splits model.safetensors into two shards with an index, then applies ``weight_map`` edits."""
    tensors = load_file(checkpoint / "model.safetensors")
    (checkpoint / "model.safetensors").unlink()
    names = sorted(tensors)
    parts = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    index = {"metadata": {}, "weight_map": {}}
    for fname, keys in parts.items():
        save_file({k: tensors[k] for k in keys}, checkpoint / fname)
        index["weight_map"].update({k: fname for k in keys})
    index["weight_map"].update(weight_map)
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))


def test_sharded_checkpoint_loads(checkpoint):
    _shard(checkpoint, {})
    from_pretrained(checkpoint, dtype="float32")


@pytest.mark.parametrize("target", ["../x.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_index_entries_must_stay_in_the_directory(checkpoint, target):
    (checkpoint.parent / "x.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    _shard(checkpoint, {NORM: target})
    _refused(checkpoint, "model.safetensors.index.json", repr(NORM), "outside")


def test_index_symlink_out_of_the_directory(checkpoint):
    (checkpoint.parent / "x.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    _shard(checkpoint, {})
    (checkpoint / "model-00002-of-00002.safetensors").unlink()
    (checkpoint / "model-00002-of-00002.safetensors").symlink_to(checkpoint.parent / "x.safetensors")
    _refused(checkpoint, "model.safetensors.index.json", "outside")


def test_index_entry_not_in_its_shard(checkpoint):
    _shard(checkpoint, {})
    index = json.loads((checkpoint / "model.safetensors.index.json").read_text())
    first = index["weight_map"][NORM]
    other = next(v for v in index["weight_map"].values() if v != first)
    index["weight_map"][NORM] = other
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    _refused(checkpoint, "model.safetensors.index.json", repr(NORM), "does not hold it")


def test_index_not_json(checkpoint):
    _shard(checkpoint, {})
    (checkpoint / "model.safetensors.index.json").write_text("{\"weight_map\": ")
    _refused(checkpoint, "model.safetensors.index.json", "weight_map")


# ------------------------------------------------------------------------------------ GGUF


def _tiny_gguf(path):
    import gguf

    writer = gguf.GGUFWriter(str(path), "qwen3")
    d, f, v, heads, kv, hd = 32, 64, 64, 2, 1, 16
    writer.add_block_count(1)
    writer.add_embedding_length(d)
    writer.add_feed_forward_length(f)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_key_length(hd)
    writer.add_vocab_size(v)
    writer.add_context_length(128)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (v, d), "output_norm.weight": (d,), "blk.0.attn_norm.weight": (d,),
              "blk.0.ffn_norm.weight": (d,), "blk.0.attn_q.weight": (heads * hd, d),
              "blk.0.attn_k.weight": (kv * hd, d), "blk.0.attn_v.weight": (kv * hd, d),
              "blk.0.attn_output.weight": (d, heads * hd), "blk.0.attn_q_norm.weight": (hd,),
              "blk.0.attn_k_norm.weight": (hd,), "blk.0.ffn_gate.weight": (f, d),
              "blk.0.ffn_up.weight": (f, d), "blk.0.ffn_down.weight": (d, f)}
    for name, shape in shapes.items():
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _export_with_marker(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "config.json").write_text('{"old": true}')
    (out / "model.safetensors").write_bytes(b"old weights")
    return out


def test_gguf_conversion_replaces_the_export_when_complete(tmp_path):
    from globmed_jax.models.gguf_convert import convert_gguf

    out = _export_with_marker(tmp_path)
    convert_gguf(_tiny_gguf(tmp_path / "tiny.gguf"), out, with_tokenizer=False)
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3"
    assert set(load_file(out / "model.safetensors")) >= {EMBED, NORM}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "tiny.gguf"]  # no staging left


@pytest.mark.parametrize("stage", ["tensors", "config"])
def test_failed_gguf_conversion_keeps_the_existing_export(tmp_path, monkeypatch, stage):
    from globmed_jax.models import gguf_convert

    out = _export_with_marker(tmp_path)
    gguf_file = _tiny_gguf(tmp_path / "tiny.gguf")
    if stage == "tensors":
        real = gguf_convert._hf_tensors

        def failing(*args):
            iterator = real(*args)
            yield next(iterator)
            raise RuntimeError("disk full (planted)")

        monkeypatch.setattr(gguf_convert, "_hf_tensors", failing)
    else:
        def failing_config(cfg):
            raise RuntimeError("disk full (planted)")

        monkeypatch.setattr(gguf_convert, "to_hf_config", failing_config)
    with pytest.raises(RuntimeError, match="planted"):
        gguf_convert.convert_gguf(gguf_file, out, with_tokenizer=False)
    assert (out / "config.json").read_text() == '{"old": true}'
    assert (out / "model.safetensors").read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "tiny.gguf"]


def test_float64_values_beyond_float32_are_refused(checkpoint):
    # Finite in the file, inf after the cast to the float32 storage dtype.
    st = checkpoint / "model.safetensors"
    tensors = load_file(st)
    name = "model.layers.1.mlp.up_proj.weight"
    big = tensors[name].astype(np.float64)
    big[0, 0] = 1e300
    tensors[name] = big
    save_file(tensors, st)
    _refused(checkpoint, str(st), repr(name), "1e+300", "float32")
