"""rl_loss: packed rows (the samples of one prompt sharing it) give the same log-probs, KL and gradients as one
row per sequence, on every tiny architecture."""

from __future__ import annotations

import pytest

from t2cli import rl_loss
from tests.conftest import TINY_ARCHS, build_model

PROMPTS = [({"role": "user", "content": "What is 2 + 3?"},)] * 3 + [({"role": "user", "content": "Which choice? A B"},)] * 2
COMPLETIONS = ["It is 5.", "The answer is 42", "", "A", "B B B"]
FINISHED = [True, False, True, True, False]


def _sharp(model):
    """Scale the random matrices up so that a wrong position or mask moves log-probs by ~0.1, not ~1e-4."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(8)
    return model


def _terms(model, tok, pack, weights=None):
    import torch

    batch = rl_loss.build_batch(tok, PROMPTS, COMPLETIONS, FINISHED, pack=pack)
    logp, kl, ntok = rl_loss.sequence_terms(model, weights, batch, kl=weights is not None)
    return batch, logp, kl, ntok


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_packed_equals_unpacked(arch, tiny_tokenizer, one_thread):
    import torch

    model = _sharp(build_model(arch, vocab_size=len(tiny_tokenizer)))
    assert rl_loss.can_pack(model)
    names = [n for n, _ in model.named_parameters() if n.endswith("mlp.down_proj.weight")]
    params = dict(model.named_parameters())
    torch.manual_seed(0)
    results = {}
    for pack in (False, True):
        leaves = {n: (params[n].detach() * 1.1).requires_grad_(True) for n in names}
        batch, logp, kl, ntok = _terms(model, tiny_tokenizer, pack, leaves)
        (logp.sum() + kl.sum()).backward()
        results[pack] = (batch, logp.detach(), kl.detach(), ntok, {n: leaves[n].grad.clone() for n in names})
    packed, plain = results[True], results[False]
    assert len(packed[0]) == len(plain[0]) == len(PROMPTS)
    assert packed[0].input_ids.shape[0] == 2  # two distinct prompts, two rows
    assert packed[0].input_ids.numel() < plain[0].input_ids.numel()
    torch.testing.assert_close(packed[3], plain[3])  # same token counts per sequence
    torch.testing.assert_close(packed[1], plain[1], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(packed[2], plain[2], atol=1e-4, rtol=1e-4)
    assert float(plain[2].abs().sum()) > 0  # the moved weights give a KL the comparison can see
    for n in names:
        torch.testing.assert_close(packed[4][n], plain[4][n], atol=1e-4, rtol=1e-4)


def test_packing_keeps_sequence_order(tiny_llama, one_thread):
    """Sequences come back in input order even when equal prompts are not adjacent."""
    import torch

    model, tok = tiny_llama
    _sharp(model)
    prompts = [PROMPTS[0], PROMPTS[3], PROMPTS[0]]
    comps, done = ["It is 5.", "A", "x"], [True, True, False]
    a = rl_loss.sequence_terms(model, None, rl_loss.build_batch(tok, prompts, comps, done), kl=False)[0]
    b = rl_loss.sequence_terms(model, None, rl_loss.build_batch(tok, prompts, comps, done, pack=True), kl=False)[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(b[0], b[1])


def test_can_pack_refuses_kernels_without_custom_masks(tiny_llama):
    model, _ = tiny_llama
    model.config._attn_implementation = "flash_attention_2"
    assert not rl_loss.can_pack(model)
