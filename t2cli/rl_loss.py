"""Token-level pieces of the SVF trainer: sequences, log-probabilities at generated positions, KL, the loss.

Memory rule: full-vocabulary logits exist only for the generated (completion) tokens of one micro-batch. The decoder
runs to its last hidden state, the hidden states are sliced to the positions that predict completion tokens, and
only then the LM head is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

IGNORE = -100


@dataclass
class Batch:
    """Right-padded prompt+completion token ids; ``labels`` hold completion tokens, IGNORE elsewhere."""

    input_ids: object
    attention_mask: object
    labels: object

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def render_prompt(tokenizer, messages) -> str:
    if isinstance(messages, str):
        return messages
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def build_batch(tokenizer, prompts: Sequence, completions: Sequence[str], finished: Sequence[bool], device="cpu") -> Batch:
    """Tokenise prompt (chat template) and completion separately and join them; an eos token is appended to a
    completion that ended on its own (``finished``), so the model also learns when to stop."""
    import torch

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows, labels = [], []
    for prompt, completion, done in zip(prompts, completions, finished):
        p = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if done and eos is not None:
            c = c + [eos]
        if not c:  # nothing to score: keep one eos so the row contributes a defined (tiny) term
            c = [eos]
        rows.append(p + c)
        labels.append([IGNORE] * len(p) + c)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    lab = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labels)):
        ids[i, : len(r)] = torch.tensor(r)
        lab[i, : len(l)] = torch.tensor(l)
        mask[i, : len(r)] = 1
    return Batch(ids.to(device), mask.to(device), lab.to(device))


def _decoder(model):
    prefix = getattr(model, "base_model_prefix", "model")
    decoder = getattr(model, prefix, None)
    if decoder is None:
        raise TypeError(f"{type(model).__name__} has no decoder attribute {prefix!r}")
    return prefix, decoder


def completion_logits(model, weights: Mapping[str, object] | None, batch: Batch):
    """Logits (N_tokens, V) at the positions predicting completion tokens, and those tokens (N_tokens,).

    ``weights`` (HF parameter names -> tensors) replace the model's parameters for this call only
    (``torch.func.functional_call``), so gradients flow into them and the model itself is never modified.
    """
    import torch
    from torch.func import functional_call

    prefix, decoder = _decoder(model)
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "use_cache": False}
    if weights:
        sub = {n[len(prefix) + 1:]: w for n, w in weights.items()}
        out = functional_call(decoder, sub, (), kwargs, strict=False)
    else:
        out = decoder(**kwargs)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    select = batch.labels[:, 1:] != IGNORE
    h = hidden[:, :-1][select]  # (N_tokens, H): slice before the LM head
    targets = batch.labels[:, 1:][select]
    logits = model.get_output_embeddings()(h).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits, targets, select


def sequence_terms(model, weights, batch: Batch, kl: bool, norm: str = "mean", base_context=None):
    """Per-sequence log π(y|x) (sum or mean over its tokens) and exact KL(π_z ‖ π_base) (same reduction).

    The KL is computed exactly over the vocabulary at each generated position, Σ_v p_z (log p_z − log p_base),
    with the base log-probs from a no-grad forward of the unmodified model (run inside ``base_context()`` when
    given, e.g. PEFT's ``disable_adapter``). Returns (logp, kl or None, ntokens).
    """
    import contextlib

    import torch

    logits, targets, select = completion_logits(model, weights, batch)
    logp_all = torch.log_softmax(logits, dim=-1)
    tok_logp = logp_all.gather(1, targets[:, None]).squeeze(1)
    row = torch.arange(len(batch), device=select.device)[:, None].expand_as(select)[select]
    ntok = select.sum(1).clamp_min(1).to(tok_logp.dtype)

    def reduce(v):
        total = torch.zeros(len(batch), dtype=v.dtype, device=v.device).index_add(0, row, v)
        return total / ntok if norm == "mean" else total

    kl_seq = None
    if kl:
        with torch.no_grad(), (base_context or contextlib.nullcontext)():
            base_logits, _, _ = completion_logits(model, None, batch)
            base_logp = torch.log_softmax(base_logits, dim=-1)
        tok_kl = (logp_all.exp() * (logp_all - base_logp)).sum(-1)
        kl_seq = reduce(tok_kl)
    return reduce(tok_logp), kl_seq, ntok


def micro_batch_loss(model, weights, batch: Batch, advantages, kl_coef: float, norm: str, total_sequences: int,
                     base_context=None):
    """Σ_i (−A_i · log π(y_i|x_i) + λ · KL_i) / total_sequences for this micro-batch, plus detached stats."""
    logp, kl_seq, _ = sequence_terms(model, weights, batch, kl=kl_coef > 0, norm=norm, base_context=base_context)
    adv = advantages.to(logp.device, logp.dtype)
    loss = -(adv * logp).sum()
    if kl_seq is not None:
        loss = loss + kl_coef * kl_seq.sum()
    loss = loss / total_sequences
    stats = {"logp_sum": float(logp.detach().sum()),
             "kl_sum": float(kl_seq.detach().sum()) if kl_seq is not None else None}
    return loss, stats


def advantages(rewards: Sequence[float], groups: Sequence[int], baseline: str):
    """A = r − b: ``none`` → b = 0; ``mean`` → b = mean reward of the same prompt's samples when a prompt has
    several samples, else the mean over the whole batch."""
    import torch

    r = torch.tensor(rewards, dtype=torch.float32)
    if baseline == "none":
        return r
    g = torch.tensor(groups)
    if len(set(groups)) < len(groups):  # several samples per prompt: per-prompt mean
        out = r.clone()
        for key in set(groups):
            sel = g == key
            out[sel] = r[sel] - r[sel].mean()
        return out
    return r - r.mean()
