"""LoRA trainer (the baseline SVF is compared with): same data, same objectives, same validation as ``t2cli.rl``.

Two objectives, chosen by ``TrainConfig.objective``:

* ``ntp`` — next-token prediction on ``Example.solution`` (the paper's main LoRA baseline): the prompt is rendered
  with the chat template and masked, the loss is on the answer tokens (+ eos) only, −(1/N) Σ_i mean_t log p.
* ``rl`` — the SVF objective unchanged: sampled (or greedy) rollouts, reward +1 / ``neg_reward``,
  ``rl_loss.advantages`` baseline, −(1/N) Σ_i A_i log π(y_i|x_i) + λ·KL(π_LoRA ‖ π_base); the base distribution for
  the KL comes from the same model with the adapter disabled (``PeftModel.disable_adapter``).

Reused from the SVF trainer: ``rl_loss.build_batch`` / ``completion_logits`` / ``advantages``, ``rl.next_batch``
(same data order for the same seed), ``rl.lr_factor`` (warmup + cosine), ``rl._accuracy`` (greedy validation).
Only adapter weights receive gradients; the base model is unwrapped again at the end (``unload``), bit-identical.

Differences from the SVF trainer: LoRA dropout is active in the loss forward (model in train mode) and off in
rollouts and validation; no checkpoint/resume and no data parallelism (single process); the best adapter on
validation is kept as ``<run_dir>/lora-<task>/`` (see :mod:`t2cli.lora`). Defaults chosen by the CLI for LoRA:
lr 2e-4 and gradient clip 1.0 (the SVF values 2e-3 / 1e-3 are tuned for one scalar per singular value).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from . import rl_loss
from .errors import ConfigError, TrainingError
from .lora import LoraSettings, save_adapter, trainable_counts, wrap

log = logging.getLogger(__name__)

DEFAULT_LR = 2e-4
DEFAULT_GRAD_CLIP = 1.0


@dataclass
class LoraResult:
    adapter_path: Path
    best_val: float | None
    steps_done: int
    run_dir: Path
    stopped_early: bool
    metrics_path: Path
    trainable: dict


def adapter_dir(run_dir: Path, task_name: str) -> Path:
    return Path(run_dir) / f"lora-{task_name}"


def loss_terms(peft_model, batch, advantages, kl_coef: float, norm: str, total: int):
    """Σ_i (−A_i log π(y_i|x_i) + λ KL_i) / total for one micro-batch: the SVF loss, with the adapter as the policy
    and the model with the adapter switched off as the base."""
    loss, stats = rl_loss.micro_batch_loss(peft_model.get_base_model(), None, batch, advantages, kl_coef, norm, total,
                                           base_context=peft_model.disable_adapter)
    return loss, stats["logp_sum"], stats["kl_sum"] or 0.0


def _check(cfg) -> None:
    import torch.distributed as dist

    p = []
    if cfg.resume:
        p.append("--resume (LoRA runs keep no checkpoint: start a new run)")
    if cfg.kind != "expert":
        p.append(f"kind={cfg.kind!r} (LoRA trains task adapters only)")
    if (dist.is_available() and dist.is_initialized()) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        p.append("torchrun / data parallel (LoRA training is single-process: run it without torchrun)")
    if p:
        raise ConfigError("unsupported with --method lora: " + "; ".join(p))


def train_lora(cfg, lora: LoraSettings, model, tokenizer, model_name: str, task,
               progress: Callable[[int], None] | None = None) -> LoraResult:
    """Train a LoRA adapter on ``task`` (``cfg``: an ``rl.TrainConfig``); returns where the best adapter is."""
    import torch

    from . import __version__
    from .arch import select_targets
    from .generation import HFBackend
    from .rl import METRICS_FILE, _accuracy, _settings, lr_factor, next_batch
    from .svd import model_fingerprint

    cfg.validate()
    _check(cfg)
    fingerprint = model_fingerprint(model)
    counts = trainable_counts(model, select_targets(model, cfg.targets, cfg.layers), lora)
    train_data = task.load(cfg.train_split, cfg.data_dir, limit=cfg.train_limit)
    if not train_data:
        raise ConfigError(f"task {task.name} split {cfg.train_split} is empty: check --data-dir / --train-limit")
    val_data = task.load(cfg.val_split, cfg.data_dir, limit=cfg.val_limit) if cfg.val_every else []
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = cfg.run_dir / METRICS_FILE
    metrics_path.write_text("")
    out_path = adapter_dir(cfg.run_dir, task.name)
    was_training = model.training
    model.requires_grad_(False)
    peft_model = wrap(model, lora, cfg.seed)
    inner = peft_model.get_base_model()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    counts["lora"]["params_peft"] = int(sum(p.numel() for p in params))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    backend = HFBackend(inner, tokenizer)
    device = next(inner.parameters()).device
    dtype = next(inner.parameters()).dtype
    pack = cfg.objective == "rl" and cfg.samples_per_prompt > 1 and rl_loss.can_pack(inner)

    def write(rec):
        with open(metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")

    def save(val, steps_done):
        training = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
        training["steps_done"] = steps_done
        meta = {"base_model": model_name, "model_fingerprint": fingerprint, "task": task.name,
                "objective": cfg.objective, "lora": lora.to_dict(), "training": training, "val_score": val,
                "trainable_params": counts["lora"]["params_peft"], "trainable": counts, "t2_version": __version__}
        save_adapter(peft_model, out_path, meta)

    def validate():
        inner.eval()
        return _accuracy(backend, None, task, val_data, cfg, 0, 1)

    step, pos, best, stale, stopped = 0, 0, None, 0, False
    try:
        if cfg.val_every:
            best = validate()
            save(best, 0)
            write({"step": 0, "val_accuracy": best})
        while step < cfg.steps and not stopped:
            t0 = time.perf_counter()
            idx, pos = next_batch(len(train_data), pos, cfg.batch_size, cfg.seed)
            examples = [train_data[i] for i in idx]
            lr = opt.param_groups[0]["lr"]
            if cfg.objective == "ntp":
                seqs = [(e.messages, e.solution, True) for e in examples]
                rewards, adv, correct = [1.0] * len(seqs), [1.0] * len(seqs), None
            else:
                inner.eval()
                rep = [(i, e) for i, e in enumerate(examples) for _ in range(cfg.samples_per_prompt)]
                settings = _settings(cfg, task, cfg.rollout == "greedy", cfg.seed * 1_000_003 + step * 97)
                outs = backend.generate([e.messages for _, e in rep], settings)
                correct = [s.correct for s in task.score_batch(outs, [e for _, e in rep])]
                rewards = [1.0 if c else float(cfg.neg_reward) for c in correct]
                adv = rl_loss.advantages(rewards, [i for i, _ in rep], cfg.baseline).tolist()
                limit = settings.max_new_tokens
                seqs = [(e.messages, o, len(tokenizer(o, add_special_tokens=False)["input_ids"]) < limit)
                        for (_, e), o in zip(rep, outs)]
            inner.train()
            loss_sum = logp_sum = kl_sum = 0.0
            for start in range(0, len(seqs), cfg.micro_batch_size):
                chunk = seqs[start : start + cfg.micro_batch_size]
                batch = rl_loss.build_batch(tokenizer, [s[0] for s in chunk], [s[1] for s in chunk],
                                            [s[2] for s in chunk], device=device, pack=pack, dtype=dtype)
                a = torch.tensor(adv[start : start + cfg.micro_batch_size])
                loss, lp, kl = loss_terms(peft_model, batch, a, cfg.kl_coef, cfg.logp_norm, len(seqs))
                if not torch.isfinite(loss):
                    opt.zero_grad(set_to_none=True)
                    raise TrainingError(f"loss became NaN/inf at step {step + 1}; best adapter {out_path}: lower --lr")
                loss.backward()
                loss_sum, logp_sum, kl_sum = loss_sum + float(loss.detach()), logp_sum + lp, kl_sum + kl
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            if not math.isfinite(gnorm):
                opt.zero_grad(set_to_none=True)
                raise TrainingError(f"gradient became NaN/inf at step {step + 1}; best adapter {out_path}: lower --lr")
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            n = len(seqs)
            rec = {"step": step, "loss": loss_sum, "logp": logp_sum / n, "kl": kl_sum / n if cfg.kl_coef > 0 else None,
                   "reward": sum(rewards) / n, "accuracy": (sum(map(bool, correct)) / n) if correct is not None else None,
                   "grad_norm": gnorm, "lr": lr, "seconds": time.perf_counter() - t0}
            if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                val = rec["val_accuracy"] = validate()
                if best is None or val > best:
                    best, stale = val, 0
                    save(val, step)
                else:
                    stale += 1
                    stopped = cfg.patience is not None and stale >= cfg.patience
            write(rec)
            if progress is not None:
                progress(1)
        if not cfg.val_every:
            save(None, step)
    finally:
        peft_model.unload()
        model.train(was_training)
        model.requires_grad_(False)
    return LoraResult(out_path, best, step, cfg.run_dir, stopped, metrics_path, counts)
