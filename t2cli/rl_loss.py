"""Token-level pieces of the SVF trainer: sequences, log-probabilities at generated positions, KL, the loss.

Memory rule: full-vocabulary logits exist only for the generated (completion) tokens of one micro-batch. The decoder
runs to its last hidden state, the hidden states are sliced to the positions that predict completion tokens, and
only then the LM head is applied.

Prompt sharing (``build_batch(..., pack=True)``): the samples of one prompt are laid out in one row as
prompt + completion_1 + … + completion_k, with position ids restarting after the prompt for each completion and a
4D attention mask in which a completion sees the prompt and its own earlier tokens only. The log-probs are those
of k separate rows (same positions, same visible tokens), but the prompt runs once instead of k times: with
4 samples of short answers after a ~110-token prompt that is about 3x fewer tokens in the forward and backward.
It needs an attention implementation that honours a custom 4D mask (``eager``, ``sdpa``); ``can_pack`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

IGNORE = -100


@dataclass
class Batch:
    """Right-padded prompt+completion token ids; ``labels`` hold completion tokens, IGNORE elsewhere.

    A packed batch (several completions of one prompt per row) also carries ``position_ids``, a 4D additive
    ``attention_mask`` and, per completion token, the flat position that predicts it (``predict_at``), the token
    (``targets``) and the sequence it belongs to (``seq_index``); ``n_seqs`` counts sequences, not rows.
    """

    input_ids: object
    attention_mask: object
    labels: object = None
    position_ids: object = None
    predict_at: object = None
    targets: object = None
    seq_index: object = None
    n_seqs: int | None = None

    @property
    def packed(self) -> bool:
        return self.predict_at is not None

    def __len__(self) -> int:
        return int(self.n_seqs if self.n_seqs is not None else self.input_ids.shape[0])


PACKABLE_ATTENTION = ("eager", "sdpa")


def can_pack(model) -> bool:
    """True when the model's attention honours a custom 4D mask (flash-attention and paged kernels do not)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return impl in PACKABLE_ATTENTION


def render_prompt(tokenizer, messages) -> str:
    if isinstance(messages, str):
        return messages
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def _token_pairs(tokenizer, prompts, completions, finished) -> list[tuple[str, list[int], list[int]]]:
    """(rendered prompt, prompt ids, completion ids) per sequence; eos appended to a completion that ended on its
    own, and a lone eos for an empty one (so every sequence contributes a defined term)."""
    eos = tokenizer.eos_token_id
    out = []
    for prompt, completion, done in zip(prompts, completions, finished):
        text = render_prompt(tokenizer, prompt)
        p = tokenizer(text, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if done and eos is not None:
            c = c + [eos]
        if not c:
            c = [eos]
        out.append((text, p, c))
    return out


def build_batch(tokenizer, prompts: Sequence, completions: Sequence[str], finished: Sequence[bool], device="cpu",
                pack: bool = False, dtype=None) -> Batch:
    """Tokenise prompt (chat template) and completion separately and join them; an eos token is appended to a
    completion that ended on its own (``finished``), so the model also learns when to stop.

    ``pack``: completions of the same prompt share one row (see the module docstring); ``dtype`` is the dtype of
    the additive mask (the model's)."""
    import torch

    pairs = _token_pairs(tokenizer, prompts, completions, finished)
    if pack:
        return _packed(tokenizer, pairs, device, dtype or torch.float32)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows, labels = [], []
    for _, p, c in pairs:
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


def _packed(tokenizer, pairs, device, dtype) -> Batch:
    """One row per distinct prompt: prompt, then each of its completions with positions restarting after the
    prompt; the mask lets a completion token see the prompt and the earlier tokens of its own completion."""
    import torch

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    groups: dict[str, list[int]] = {}
    for i, (text, _, _) in enumerate(pairs):
        groups.setdefault(text, []).append(i)
    rows = []  # (ids, positions, segment per token, [(seq, start, length)])
    for members in groups.values():
        p = pairs[members[0]][1]
        ids, pos, seg, spans = list(p), list(range(len(p))), [0] * len(p), []
        for k, i in enumerate(members, start=1):
            c = pairs[i][2]
            spans.append((i, len(ids), len(c)))
            ids += c
            pos += range(len(p), len(p) + len(c))
            seg += [k] * len(c)
        rows.append((ids, pos, seg, spans, len(p)))
    width = max(len(r[0]) for r in rows)
    n_rows = len(rows)
    input_ids = torch.full((n_rows, width), pad, dtype=torch.long)
    position_ids = torch.zeros((n_rows, width), dtype=torch.long)
    segment = torch.full((n_rows, width), -1, dtype=torch.long)
    predict_at, targets, seq_index = [], [], []
    for r, (ids, pos, seg, spans, plen) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        position_ids[r, : len(pos)] = torch.tensor(pos)
        segment[r, : len(seg)] = torch.tensor(seg)
        for seq, start, length in spans:
            # the first completion token is predicted by the last prompt token, the others by their predecessor
            at = [plen - 1] + list(range(start, start + length - 1))
            predict_at += [r * width + a for a in at]
            targets += ids[start : start + length]
            seq_index += [seq] * length
    q = torch.arange(width)
    causal = q[None, :, None] >= q[None, None, :]  # (1, T_q, T_k)
    sq, sk = segment[:, :, None], segment[:, None, :]
    allowed = causal & ((sk == 0) | (sk == sq)) & (sq >= 0) & (sk >= 0)
    allowed |= torch.eye(width, dtype=torch.bool)[None]  # padding sees itself: no row without a key
    mask = torch.zeros((n_rows, 1, width, width), dtype=dtype)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return Batch(input_ids.to(device), mask.to(device), None, position_ids.to(device),
                 torch.tensor(predict_at, device=device), torch.tensor(targets, device=device),
                 torch.tensor(seq_index, device=device), len(pairs))


def _decoder(model):
    prefix = getattr(model, "base_model_prefix", "model")
    decoder = getattr(model, prefix, None)
    if decoder is None:
        raise TypeError(f"{type(model).__name__} has no decoder attribute {prefix!r}")
    return prefix, decoder


def completion_logits(model, weights: Mapping[str, object] | None, batch: Batch):
    """Logits (N_tokens, V) at the positions predicting completion tokens, those tokens (N_tokens,) and the
    sequence each belongs to (N_tokens,).

    ``weights`` (HF parameter names -> tensors) replace the model's parameters for this call only
    (``torch.func.functional_call``), so gradients flow into them and the model itself is never modified.
    """
    import torch
    from torch.func import functional_call

    prefix, decoder = _decoder(model)
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "use_cache": False}
    if batch.packed:
        kwargs["position_ids"] = batch.position_ids
    if weights:
        sub = {n[len(prefix) + 1:]: w for n, w in weights.items()}
        out = functional_call(decoder, sub, (), kwargs, strict=False)
    else:
        out = decoder(**kwargs)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    if batch.packed:
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.predict_at)
        targets, seq = batch.targets, batch.seq_index
    else:
        select = batch.labels[:, 1:] != IGNORE
        h = hidden[:, :-1][select]  # (N_tokens, H): slice before the LM head
        targets = batch.labels[:, 1:][select]
        seq = torch.arange(len(batch), device=select.device)[:, None].expand_as(select)[select]
    logits = model.get_output_embeddings()(h).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits, targets, seq


def sequence_terms(model, weights, batch: Batch, kl: bool, norm: str = "mean", base_context=None):
    """Per-sequence log π(y|x) (sum or mean over its tokens) and exact KL(π_z ‖ π_base) (same reduction).

    The KL is computed exactly over the vocabulary at each generated position, Σ_v p_z (log p_z − log p_base),
    with the base log-probs from a no-grad forward of the unmodified model (run inside ``base_context()`` when
    given, e.g. PEFT's ``disable_adapter``). Returns (logp, kl or None, ntokens).
    """
    import contextlib

    import torch

    logits, targets, row = completion_logits(model, weights, batch)
    logp_all = torch.log_softmax(logits, dim=-1)
    tok_logp = logp_all.gather(1, targets[:, None]).squeeze(1)
    ntok = torch.bincount(row, minlength=len(batch)).clamp_min(1).to(tok_logp.dtype)

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
