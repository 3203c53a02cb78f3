"""LoRA baseline: training touches only adapter weights, the folder round-trips to identical logits, merged weights
match the PEFT model, foreign adapters are refused, and SVF/LoRA parameter counts are right."""

from __future__ import annotations

import json

import pytest
import torch

from _svf_helpers import FakeTask
from conftest import build_model
from t2cli import lora
from t2cli.arch import select_targets
from t2cli.errors import ConfigError, ExpertError
from t2cli.lora_train import train_lora
from t2cli.rl import TrainConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(run_dir, **kw):
    base = dict(run_dir=run_dir, objective="ntp", steps=2, batch_size=4, micro_batch_size=2, samples_per_prompt=2,
                val_every=0, kl_coef=0.0, lr=1e-2, grad_clip=1.0)
    base.update(kw)
    return TrainConfig(**base)


def _ids(tok):
    return tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                   return_tensors="pt", return_dict=True)["input_ids"]


def _lora_state(model_or_peft):
    return {n: p.detach().clone() for n, p in model_or_peft.named_parameters() if "lora_" in n}


def test_ntp_two_steps_change_only_adapter_weights(tiny_llama, tmp_path):
    model, tok = tiny_llama
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = lora.LoraSettings(rank=4, alpha=8, dropout=0.05)
    res = train_lora(_cfg(tmp_path / "run"), settings, model, tok, "tiny", FakeTask(n=4))
    after = model.state_dict()  # the trainer unwraps the model again: same keys, bit-identical tensors
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in model.parameters())
    from safetensors.torch import load_file

    saved = load_file(res.adapter_path / "adapter_model.safetensors")
    b_mats = [k for k in saved if "lora_B" in k]
    assert len(b_mats) == 4 and all(saved[k].abs().sum() > 0 for k in b_mats)  # B starts at zero: every B moved
    assert all(not k.startswith("base_model.model.lm_head") for k in saved) and all("lora_" in k for k in saved)
    meta = json.loads((res.adapter_path / lora.META_FILE).read_text())
    assert meta["objective"] == "ntp" and meta["task"] == "fake" and meta["base_model"] == "tiny"
    assert meta["lora"] == {"rank": 4, "alpha": 8, "dropout": 0.05, "targets": ["q_proj", "v_proj"]}
    assert meta["trainable_params"] == res.trainable["lora"]["params"] == 2 * 4 * ((32 + 32) + (32 + 16))  # q: 32->32, v: 32->16
    records = [json.loads(x) for x in res.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and all(r["loss"] > 0 for r in records)  # −mean log p > 0


def test_round_trip_gives_identical_logits(tiny_llama, tmp_path):
    from peft import PeftModel

    model, tok = tiny_llama
    res = train_lora(_cfg(tmp_path / "run", objective="rl", steps=1, kl_coef=0.1), lora.LoraSettings(rank=4),
                     model, tok, "tiny", FakeTask(n=4))
    ids = _ids(tok)
    with torch.no_grad():
        base_logits = model(ids).logits
    pm = lora.load_adapter(res.adapter_path, model, "tiny")
    assert isinstance(pm, PeftModel)
    with torch.no_grad():
        adapted = pm(input_ids=ids).logits
    trained = _lora_state(pm)
    assert trained and not torch.equal(adapted, base_logits)
    pm.unload()
    pm2 = lora.load_adapter(res.adapter_path, model, "tiny")
    with torch.no_grad():
        again = pm2(input_ids=ids).logits
    assert torch.equal(adapted, again)
    pm2.unload()
    weights = lora.lora_weights(res.adapter_path, model, "tiny")  # merged W + ΔW for the eval backend
    assert sorted(weights) == sorted(n for n in dict(model.named_parameters()) if "q_proj" in n or "v_proj" in n)
    from torch.func import functional_call

    with torch.no_grad():
        merged = functional_call(model, weights, (ids,)).logits
        restored = model(ids).logits
    assert torch.allclose(merged, adapted, atol=1e-5)
    assert torch.equal(restored, base_logits)  # loading/merging left the base model untouched


def test_other_model_is_refused_by_fingerprint(tiny_llama, tiny_tokenizer, tmp_path):
    model, tok = tiny_llama
    res = train_lora(_cfg(tmp_path / "run", steps=1), lora.LoraSettings(rank=2), model, tok, "tiny", FakeTask(n=2))
    other = build_model("llama", len(tiny_tokenizer), seed=7)
    with pytest.raises(ExpertError, match="pass --model tiny"):
        lora.lora_weights(res.adapter_path, other, "other")
    with pytest.raises(ExpertError, match="adapter_config.json"):
        lora.read_meta(tmp_path)


def test_trainable_counts_match_peft(tiny_llama):
    model, _ = tiny_llama
    settings = lora.LoraSettings(rank=8, targets="q_proj,k_proj,v_proj,o_proj")
    counts = lora.trainable_counts(model, select_targets(model, "mlp"), settings)
    # mlp: gate/up (64x32) and down (32x64) per layer, rank 32 each, 2 layers
    assert counts["svf"] == {"matrices": 6, "params": 6 * 32}
    pm = lora.wrap(model, settings)
    try:
        assert counts["lora"]["params"] == pm.get_nb_trainable_parameters()[0]
        assert counts["lora"]["modules"] == 8
    finally:
        pm.unload()
    from peft import LoraConfig, get_peft_model

    patterned = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], rank_pattern={"q_proj": 2})
    expected = lora.trainable_counts(model, [], patterned)["lora"]["params"]
    pm = get_peft_model(model, patterned)
    try:
        assert expected == pm.get_nb_trainable_parameters()[0] == 2 * (2 * 64 + 8 * 48)
    finally:
        pm.unload()


def test_bad_settings_are_listed_and_targets_checked(tiny_llama):
    with pytest.raises(ConfigError) as err:
        lora.LoraSettings(rank=0, alpha=-1, dropout=1.5)
    assert all(w in str(err.value) for w in ("--lora-rank", "--lora-alpha", "--lora-dropout"))
    model, _ = tiny_llama
    with pytest.raises(ConfigError, match="q_proj"):
        lora.wrap(model, lora.LoraSettings(targets="qkv_proj"))
