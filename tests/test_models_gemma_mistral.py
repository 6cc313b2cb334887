"""Gemma 3 (text, and the language model of Gemma3ForConditionalGeneration) and Mistral against
Hugging Face PyTorch: logits and every hidden state (scan on/off), the save_pretrained round trip,
greedy decoding token for token across the sliding window (with a control that decodes WITHOUT
the window and must disagree), config refusals, presets and the memory planner.

Tiny fp32 models; every weight perturbed so a wrong mapping shows in the logits. The tiny Gemma
has all the family's parts switched on where a default would hide a bug: a window (6) shorter
than the sequences, a 2-sliding + 1-full cycle over 4 layers (so scan must pick each layer's kind
as data), linear RoPE scaling on full layers, query_pre_attn_scalar != head_dim, and a final
logit soft-cap small enough (2.0) to bend the logits.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from globmed_jax.decode import Decoder
from globmed_jax.models import (
    UnsupportedModelError, from_hf_config, from_pretrained, get_preset, save_pretrained, to_hf_config,
)
from hf_utils import hf_logits_and_hidden, relative_max_error

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO_ROOT = Path(__file__).resolve().parents[1]
WINDOW = 6
GEMMA = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, sliding_window=WINDOW, query_pre_attn_scalar=24,
             rope_scaling={"rope_type": "linear", "factor": 8.0}, final_logit_softcapping=2.0,
             layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
             bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=512)
MISTRAL = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=1, head_dim=24, sliding_window=WINDOW, rope_theta=10000.0, rms_norm_eps=1e-5,
               bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=512)
TOL = 1e-4  # max abs error relative to the largest reference value (as tests/test_models_parity.py)


def _perturb(model, offset_norms: bool):
    """Weights 0.08 N(0,1); norms around 1 (Gemma stores w of (1 + w): around 0)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p)
            if "norm" in name:
                p.copy_((0.0 if offset_norms else 1.0) + 0.1 * noise)
            else:
                p.copy_(0.08 * noise)
    return model.eval().float()


def build(kind: str):
    if kind == "gemma3":
        return _perturb(transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**GEMMA)), True)
    return _perturb(transformers.MistralForCausalLM(transformers.MistralConfig(**MISTRAL)), False)


def build_multimodal():
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=28, patch_size=14)
    # No soft-cap: transformers' ConditionalGeneration class ignores it (we refuse such configs).
    text = transformers.Gemma3TextConfig(**{**GEMMA, "final_logit_softcapping": None})
    config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    return _perturb(transformers.Gemma3ForConditionalGeneration(config), True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """kind -> (HF model, its save_pretrained directory); built once per kind."""
    cache: dict[str, tuple] = {}

    def get(kind: str):
        if kind not in cache:
            hf = build_multimodal() if kind == "medgemma_like" else build(kind)
            path = tmp_path_factory.mktemp(kind)
            hf.save_pretrained(path)
            cache[kind] = hf, path
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(3, 256, size=(2, 20)).astype(np.int32)


def _errors(out, ref_logits, ref_hidden, num_layers):
    """(max abs logits error, max abs hidden error over every hidden state, relative logits error)."""
    hidden = [np.abs(np.asarray(out.hidden_states[i]) - ref_hidden[i]).max() for i in range(num_layers)]
    hidden.append(np.abs(np.asarray(out.hidden) - ref_hidden[num_layers]).max())  # HF: final norm applied
    rel = max(relative_max_error(out.hidden_states[i], ref_hidden[i]) for i in range(num_layers))
    rel = max(rel, relative_max_error(out.hidden, ref_hidden[num_layers]))
    return float(np.abs(np.asarray(out.logits) - ref_logits).max()), float(max(hidden)), rel


@pytest.mark.parametrize("kind", ["gemma3", "mistral"])
def test_logits_hidden_states_and_round_trip_match_transformers(kind, saved, tokens, tmp_path):
    """Scanned and unrolled layers alike; a control without the window (one longer than the
    sequence) is far off, so the parity is not blind to the window; then the save_pretrained
    round trip."""
    hf, path = saved(kind)
    ref_logits, ref_hidden = hf_logits_and_hidden(hf, tokens)
    model, cfg = from_pretrained(path, dtype="float32")
    assert len(ref_hidden) == cfg.num_layers + 1
    for scan in (True, False):
        out = model.forward(jnp.asarray(tokens), return_hidden_states=True, scan_layers=scan)
        logit_err, hidden_err, hidden_rel = _errors(out, ref_logits, ref_hidden, cfg.num_layers)
        assert relative_max_error(out.logits, ref_logits) < TOL, f"{kind} scan={scan}: logits {logit_err:.2e}"
        assert hidden_rel < TOL, f"{kind} scan={scan}: hidden states max abs error {hidden_err:.2e}"
    if kind == "gemma3":  # the cap really binds: logits near +-2, never beyond
        assert 1.5 < np.abs(ref_logits).max() < 2.0
    no_window, _ = from_pretrained(path, dtype="float32", sliding_window=10_000)
    assert relative_max_error(no_window(jnp.asarray(tokens)), ref_logits) > 100 * TOL

    # Round trip: save_pretrained -> the same HF class and settings, the same logits; and back.
    save_pretrained(model, tmp_path / "out")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    assert type(reloaded) is type(hf)
    for key in ("sliding_window", "layer_types", "query_pre_attn_scalar", "final_logit_softcapping", "head_dim"):
        if hasattr(hf.config, key):
            assert getattr(reloaded.config, key) == getattr(hf.config, key), key
    if kind == "gemma3":
        assert reloaded.config.rope_parameters == hf.config.rope_parameters
    assert relative_max_error(hf_logits_and_hidden(reloaded, tokens)[0], ref_logits) < 1e-6
    again, _ = from_pretrained(tmp_path / "out", dtype="float32")
    np.testing.assert_array_equal(np.asarray(again(jnp.asarray(tokens))), np.asarray(model(jnp.asarray(tokens))))


def test_multimodal_checkpoint_loads_its_language_model(saved, tokens, tmp_path, caplog):
    """Gemma3ForConditionalGeneration (MedGemma 4B's class): our model is its language model
    (text tokens give the same logits), the vision tensors are skipped with a log line, and
    the export is a Gemma3ForCausalLM with those logits."""
    hf, path = saved("medgemma_like")
    keys = json.loads((path / "config.json").read_text())
    assert keys["model_type"] == "gemma3" and keys["architectures"] == ["Gemma3ForConditionalGeneration"]
    ref_logits, _ = hf_logits_and_hidden(hf, tokens)
    with caplog.at_level(logging.INFO, logger="globmed_jax.models.hf_io"):
        model, cfg = from_pretrained(path, dtype="float32")
    assert cfg.model_type == "gemma3_text"
    assert any("vision-tower" in r.getMessage() for r in caplog.records)
    assert relative_max_error(model(jnp.asarray(tokens)), ref_logits) < TOL

    save_pretrained(model, tmp_path / "text")
    text = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "text", dtype=torch.float32).eval()
    assert type(text).__name__ == "Gemma3ForCausalLM"
    assert relative_max_error(hf_logits_and_hidden(text, tokens)[0], ref_logits) < 1e-6


def _hf_greedy(hf, prompt: list[int], max_new: int) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new,
                          min_new_tokens=max_new, eos_token_id=None, pad_token_id=0, temperature=None,
                          top_p=None, top_k=None)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("kind,max_new", [("gemma3", 25), ("mistral", 30)])
def test_greedy_decode_equals_transformers_across_the_window(kind, max_new, saved):
    """Prompts of 4 and 9 tokens (one shorter, one longer than the window; left-padded in one
    batch) continued for several times the window through the KV cache. A control decoder whose
    window is off (10_000) must disagree with transformers, so this test can fail."""
    hf, path = saved(kind)
    rng = np.random.default_rng(3)
    prompts = [rng.integers(3, 256, size=n).tolist() for n in (4, 9)]
    ref = [_hf_greedy(hf, p, max_new) for p in prompts]
    model, _ = from_pretrained(path, dtype="float32")
    ours = Decoder(model, pad_id=0).generate(prompts, max_new_tokens=max_new, eos_ids=None, progress=False)
    total = sum(len(r) for r in ref)
    agree = sum(a == b for o, r in zip(ours, ref) for a, b in zip(o, r))
    assert total == len(prompts) * max_new
    assert ours == ref, f"{kind}: {agree}/{total} tokens agree"
    assert len(set(sum(ref, []))) > 5  # the continuations are not one repeated token

    no_window, _ = from_pretrained(path, dtype="float32", sliding_window=10_000)
    control = Decoder(no_window, pad_id=0).generate(prompts, max_new_tokens=max_new, eos_ids=None, progress=False)
    control_agree = sum(a == b for o, r in zip(control, ref) for a, b in zip(o, r))
    assert control != ref and control_agree < total, f"{kind}: control {control_agree}/{total} agree"


def _write_config(directory: Path, **changes) -> Path:
    config = {"model_type": "gemma3_text", **GEMMA, **changes}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_attention_softcapping_and_bidirectional_attention_are_refused(tmp_path):
    from globmed_jax.models import load_config

    with pytest.raises(UnsupportedModelError, match=r"config\.json: attn_logit_softcapping=50\.0"):
        load_config(_write_config(tmp_path / "softcap", attn_logit_softcapping=50.0))
    with pytest.raises(UnsupportedModelError, match="use_bidirectional_attention"):
        load_config(_write_config(tmp_path / "bidir", use_bidirectional_attention=True))
    with pytest.raises(UnsupportedModelError, match="hidden_activation 'relu'"):
        load_config(_write_config(tmp_path / "relu", hidden_activation="relu"))
    with pytest.raises(ValueError, match="sliding layers but sliding_window is None"):
        load_config(_write_config(tmp_path / "nowindow", sliding_window=None))


def test_public_style_configs_give_the_presets():
    """The 4B+ hub configs list only what differs from Gemma3TextConfig's defaults (under
    text_config, ids at the top level); older configs name the cycle by sliding_window_pattern
    and RoPE by rope_theta / rope_local_base_freq. Values as in google/medgemma-4b-it and
    mistralai/Mistral-7B-v0.3 (written from the public files as we recall them)."""
    medgemma = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                "eos_token_id": [1, 106], "text_config": {
                    "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                    "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                    "sliding_window": 1024, "sliding_window_pattern": 6, "rope_theta": 1000000.0,
                    "rope_local_base_freq": 10000.0}}
    assert from_hf_config(medgemma) == get_preset("medgemma_4b")
    mistral = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 32768,
               "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu", "rms_norm_eps": 1e-5,
               "rope_theta": 1000000.0, "sliding_window": None, "max_position_embeddings": 32768,
               "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}
    assert from_hf_config(mistral) == get_preset("mistral_7b_v0p3")
    for name in ("gemma3_1b", "gemma3_12b", "gemma3_27b", "medgemma_27b_text", "mistral_7b_v0p3"):
        preset = get_preset(name)  # our export, in transformers 5's per-layer-type RoPE format, reads back
        assert from_hf_config(json.loads(json.dumps(to_hf_config(preset)))) == preset, name
    # A Mistral config without the key gets transformers' default window (4096) on every layer.
    v01 = from_hf_config({k: v for k, v in mistral.items() if k != "sliding_window"})
    assert v01.sliding_window == 4096 and set(v01.layer_kinds()) == {"sliding"}


def test_preset_sizes_are_the_public_figures():
    billions = {name: get_preset(name).num_params() / 1e9 for name in (
        "gemma3_1b", "gemma3_4b", "gemma3_12b", "gemma3_27b", "medgemma_4b", "medgemma_27b_text", "mistral_7b_v0p3")}
    assert round(billions["gemma3_1b"], 2) == 1.00 and round(billions["gemma3_4b"], 2) == 3.88
    assert round(billions["gemma3_12b"], 2) == 11.77 and round(billions["gemma3_27b"], 2) == 27.01
    assert billions["medgemma_4b"] == billions["gemma3_4b"] and round(billions["medgemma_27b_text"], 2) == 27.01
    # keras-hub's medgemma_instruct_27b_text count: the text-only export has no image-token rows.
    assert get_preset("medgemma_27b_text").num_params() == 27_009_002_240
    assert get_preset("gemma3_27b").num_params() - 27_009_002_240 == 64 * 5376
    assert round(billions["mistral_7b_v0p3"], 2) == 7.25
    kinds = get_preset("gemma3_27b").layer_kinds()
    assert len(kinds) == 62 and kinds[:6] == ("sliding",) * 5 + ("full",) and kinds.count("full") == 10


def _load(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_memory_planner_compiles_the_medgemma_recipe():
    """scripts/memory_plan.py's plan for configs/globmed_medgemma_4b.py (checkpoint absent: the
    medgemma_4b preset, shrunk in width so the train step compiles in seconds; 7 layers cross
    the 5 sliding + 1 full cycle) on 2 of the simulated CPU devices."""
    import jax

    mp = _load(REPO_ROOT / "scripts" / "memory_plan.py")
    config = _load(REPO_ROOT / "configs" / "globmed_medgemma_4b.py").get_config()
    shrink = dict(num_layers=7, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=2, head_dim=16,
                  vocab_size=512)
    with config.unlocked():
        config.model.overrides.update(shrink)
        config.train.global_batch_size, config.data.seq_len = 4, 64
    plan = mp.plan(config, jax.devices()[:2], "2 x cpu")
    assert "shapes of preset medgemma_4b" in plan["model"], plan["model"]
    assert plan["num_layers"] == 7 and plan["mesh"]["fsdp"] == 2
    assert plan["params_b"] == pytest.approx(get_preset("medgemma_4b", **shrink).num_params() / 1e9, rel=1e-12)
    assert plan["xla"]["argument_gib"] > 0 and plan["analytic"]["params_gib"] > 0


def test_memory_planner_resolves_the_mistral_recipe():
    """The Mistral recipe's model is the mistral_7b_v0p3 preset when the checkpoint is absent."""
    mp = _load(REPO_ROOT / "scripts" / "memory_plan.py")
    config = _load(REPO_ROOT / "configs" / "globmed_mistral_7b_v0p3.py").get_config()
    assert mp.preset_name(config) == "mistral_7b_v0p3"
    cfg = mp.model_config(config)
    assert cfg.model_type == "mistral" and cfg.remat_policy == "full" and cfg.dtype == "bfloat16"


GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def test_gemma_style_tokenizer_loads_and_stops_at_end_of_turn(tmp_path):
    """A Gemma-3-shaped tokenizer directory (<bos>, <eos>, <start_of_turn>, <end_of_turn>, chat
    template) loads as for the other families, and generation stops at <end_of_turn> as well as
    at <eos> (an -it model ends its turn with the former)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from globmed_jax.models import load_tokenizer
    from globmed_jax.models.tokenizer import eos_ids

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "user",
                                         "model", "hello", "<unk>"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                                pad_token="<pad>", unk_token="<unk>",
                                                additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    fast.chat_template = GEMMA_CHAT_TEMPLATE
    fast.save_pretrained(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert eos_ids(tok) == [1, 4]
    prompt = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<bos><start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_gradients_match_torch_scanned_with_remat(saved, tokens):
    """What training differentiates: the next-token loss's gradient w.r.t. EVERY parameter
    equals torch's (fp32), with scanned layers (the layer kind as data) and full remat, as the
    recipes run."""
    import jax
    import optax
    from flax import nnx

    from globmed_jax.models.hf_io import param_table

    hf, path = saved("gemma3")
    ids = torch.as_tensor(tokens, dtype=torch.long)
    hf.zero_grad()
    logits = hf(ids).logits[:, :-1]
    torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
    ref = {name: p.grad.numpy() for name, p in hf.named_parameters()}

    model, cfg = from_pretrained(path, dtype="float32", scan_layers=True, remat_policy="full")

    def loss(m):
        out = m(jnp.asarray(tokens))[:, :-1]
        return optax.softmax_cross_entropy_with_integer_labels(out, jnp.asarray(tokens[:, 1:])).mean()

    grads = dict(nnx.to_flat_state(jax.jit(nnx.grad(loss))(model)))
    scale = max(np.abs(g).max() for g in ref.values())
    worst = 0.0
    for spec in param_table(cfg):
        ours = np.asarray(grads[spec.path][...])
        for i in range(cfg.num_layers) if spec.per_layer else [None]:
            name = spec.hf_name.format(i=i) if spec.per_layer else spec.hf_name
            got = spec.to_hf(ours[i] if spec.per_layer else ours, cfg)
            worst = max(worst, float(np.abs(got - ref[name]).max()))
    assert worst / scale < TOL, f"gradient max abs error {worst:.2e} (largest gradient {scale:.2e})"
