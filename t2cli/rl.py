"""REINFORCE (+ KL) trainer for SVF vectors z — one expert per run.

Each optimiser step: take the next ``batch_size`` prompts of the train split (a seeded permutation per epoch), compose
W'(z) **once**, push it into the generation backend and sample ``samples_per_prompt`` completions per prompt with no
grad, score them (reward +1 correct, ``neg_reward`` otherwise), and minimise

    L = −(1/N) Σ_i A_i · log π_z(y_i|x_i) + λ · (1/N) Σ_i KL_i

over the completion tokens only. The composed W' is detached into leaf tensors; micro-batches run through
``torch.func.functional_call`` with those leaves and accumulate their grads; one ``autograd.backward`` through the
composition then carries the accumulated grads into z. The base model never needs gradients and is never modified
(the backend's ``set_weights(None)`` restores it after each rollout).

Choices and departures from the paper / public reference code (defaults measured on the embedded SmolLM2-135M:
the reference recipe — greedy rollouts, ±1 rewards, no baseline — fell from 29.7% to 19.5% ARC-Easy validation in
10 steps, because almost every reward of a weak model is −1 and the update just pushes down whatever it says;
sampled rollouts with a mean baseline held 28.9% and raised test 25.4% → 28.5%):

1. ``rollout="sample"`` (temperature 1, so the log-probs we differentiate are those of the sampling policy) with
   ``samples_per_prompt=4`` and ``baseline="mean"`` (A = r − mean of the same prompt's samples; batch mean when one
   sample per prompt). The reference recipe is ``rollout="greedy", samples_per_prompt=1, baseline="none"``.
2. log π(y|x) is the **mean** over the completion's tokens (``logp_norm="mean"``), not the sum the reference code
   uses: with ±1 rewards a sum lets long, rambling wrong answers dominate the update. ``logp_norm="sum"`` restores it.
3. KL direction and estimator: exact KL(π_z ‖ π_base) = Σ_v p_z (log p_z − log p_base) over the vocabulary at each
   generated position (reduced like log π), as the paper writes it. The reference code computes KL(π_base ‖ π_z)
   with ``F.kl_div``. Default λ = 0 (the base forward it needs costs ~⅓ of a step); the metric is logged when λ > 0.
4. AdamW (weight decay 0 by default; the reference uses Adam) with lr 2e-3, cosine decay (optional linear warmup),
   global-norm gradient clipping at 1e-3 on z — as the reference.
5. Completions are re-tokenised from text (as the reference code does), and an eos token is appended when the
   completion ended before ``max_new_tokens`` (so "stop here" is part of the action). The samples of one prompt
   share one packed row in the loss forward (``rl_loss`` prompt sharing): the same numbers, ~3x fewer tokens.
6. Validation (greedy, accuracy) runs at step 0 too, so if training never beats the starting point the kept "best"
   expert is the near-neutral one. Patience counts validations without improvement.
7. ``objective="ntp"`` (paper ablation) trains the same z by next-token prediction on ``Example.solution``.

Data parallel: when ``torch.distributed`` is initialised, prompts are sharded by rank, rewards are gathered for the
batch baseline, z gradients are all-reduced (summed; the loss is already divided by the global N), and only rank 0
writes files.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from . import rl_loss
from .errors import ConfigError, TrainingError
from .rl_checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

EXPERT_FILE = "expert.safetensors"
METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainConfig:
    run_dir: Path
    objective: str = "rl"  # rl | ntp
    targets: str = "mlp"
    layers: str = "all"
    parameterisation: str = "sigmoid"
    max_mult: float = 2.0
    init_noise: float = 0.01
    steps: int = 100
    batch_size: int = 16  # prompts per optimiser step (global, across ranks)
    micro_batch_size: int = 4  # sequences per forward/backward
    samples_per_prompt: int = 4
    rollout: str = "sample"  # sample | greedy
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # None: the task's own limit
    gen_batch_size: int = 16
    neg_reward: float = -1.0
    baseline: str = "mean"  # mean | none
    logp_norm: str = "mean"  # mean | sum
    kl_coef: float = 0.0
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 1e-3
    val_every: int = 10  # 0: no validation (the last z is saved)
    val_limit: int | None = None
    patience: int | None = None  # validations without improvement before stopping; None: never
    checkpoint_every: int = 10
    train_split: str = "train"
    val_split: str = "validation"
    train_limit: int | None = None
    data_dir: str | None = None
    seed: int = 0
    resume: bool = False
    kind: str = "expert"  # expert | classifier
    labels: list | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.validate()

    def validate(self) -> None:
        """Raise one ConfigError listing every problem."""
        p = []
        choice = {"objective": ("rl", "ntp"), "rollout": ("sample", "greedy"), "baseline": ("mean", "none"),
                  "logp_norm": ("mean", "sum"), "parameterisation": ("sigmoid", "linear"), "kind": ("expert", "classifier")}
        for name, allowed in choice.items():
            if getattr(self, name) not in allowed:
                p.append(f"{name}={getattr(self, name)!r} (use {' or '.join(allowed)})")
        for name in ("steps", "batch_size", "micro_batch_size", "samples_per_prompt", "gen_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                p.append(f"{name}={getattr(self, name)!r} (use an integer >= 1)")
        for name in ("val_every", "checkpoint_every", "warmup_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                p.append(f"{name}={getattr(self, name)!r} (use an integer >= 0)")
        for name in ("lr", "grad_clip", "max_mult"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                p.append(f"{name}={v!r} (use a positive number)")
        for name in ("kl_coef", "weight_decay", "init_noise", "temperature"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                p.append(f"{name}={v!r} (use a number >= 0)")
        if not (isinstance(self.neg_reward, (int, float)) and math.isfinite(self.neg_reward) and self.neg_reward < 1):
            p.append(f"neg_reward={self.neg_reward!r} (use a finite number below the +1 reward, e.g. -1 or -0.1)")
        if not 0 < self.top_p <= 1:
            p.append(f"top_p={self.top_p} (use 0 < top_p <= 1)")
        if not 0 <= self.min_lr_ratio <= 1:
            p.append(f"min_lr_ratio={self.min_lr_ratio} (use 0..1)")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            p.append(f"max_new_tokens={self.max_new_tokens} (use >= 1 or leave unset)")
        if self.patience is not None and self.patience < 1:
            p.append(f"patience={self.patience} (use >= 1 or leave unset)")
        if self.patience is not None and not self.val_every:
            p.append("patience needs validation: set val_every >= 1")
        if self.objective == "rl" and self.rollout == "sample" and self.temperature == 0:
            p.append("rollout='sample' with temperature=0 is greedy: use rollout='greedy' or temperature > 0")
        if self.objective == "rl" and self.rollout == "greedy" and self.samples_per_prompt > 1:
            p.append("greedy rollouts with samples_per_prompt > 1 repeat the same completion: use rollout='sample'")
        if p:
            raise ConfigError("bad training config: " + "; ".join(p))


@dataclass
class TrainResult:
    expert_path: Path
    best_val: float | None
    steps_done: int
    run_dir: Path
    stopped_early: bool = False
    metrics_path: Path | None = None


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay from 1 to ``min_lr_ratio`` at the last step."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def next_batch(n: int, pos: int, size: int, seed: int) -> tuple[list[int], int]:
    """Indices at data-order positions pos..pos+size-1; each epoch is a fresh permutation fixed by (seed, epoch)."""
    out = []
    while len(out) < size:
        epoch, offset = divmod(pos, n)
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        take = min(size - len(out), n - offset)
        out.extend(order[offset : offset + take])
        pos += take
    return out, pos


def _settings(cfg: TrainConfig, task, greedy: bool, seed: int):
    from .generation import GenerationSettings

    return GenerationSettings(
        max_new_tokens=cfg.max_new_tokens or task.max_new_tokens,
        temperature=0.0 if greedy else cfg.temperature,
        top_p=cfg.top_p, seed=seed, batch_size=cfg.gen_batch_size,
    )


def _accuracy(backend, weights, task, examples, cfg, rank, world) -> float:
    """Greedy accuracy of ``weights`` on ``examples`` (sharded across ranks, counts all-reduced)."""
    import torch

    mine = examples[rank::world]
    correct = 0
    if mine:
        backend.set_weights(weights)
        try:
            outs = backend.generate([e.messages for e in mine], _settings(cfg, task, True, cfg.seed))
        finally:
            backend.set_weights(None)
        correct = sum(s.correct for s in task.score_batch(outs, mine))
    counts = torch.tensor([float(correct)])
    if world > 1:
        torch.distributed.all_reduce(counts)
    return float(counts[0]) / max(1, len(examples))


class _Trainer:
    """State of one run; ``train`` drives it."""

    def __init__(self, cfg, model, tokenizer, model_name, cache, task, backend):
        import torch

        from . import svf
        from .arch import select_targets
        from .svd import model_fingerprint

        self.cfg, self.model, self.tokenizer, self.task = cfg, model, tokenizer, task
        self.rank, self.world = _dist()
        self.fingerprint = model_fingerprint(model)
        cache.check_model(self.fingerprint, model_name)
        names = [t.name for t in select_targets(model, cfg.targets, cfg.layers)]
        device = next(model.parameters()).device
        model.requires_grad_(False)
        self.factors = svf.Factors.load(cache, names, device=device, model=model)
        self.params = svf.init_params(self.factors, names, cfg.parameterisation, cfg.seed, cfg.init_noise,
                                      cfg.max_mult, device)
        self.opt = torch.optim.AdamW(self.params.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, cfg))
        self.meta_base = dict(base_model=model_name, model_fingerprint=self.fingerprint,
                              svd_fingerprint=cache.fingerprint)
        self.train_data = task.load(cfg.train_split, cfg.data_dir, limit=cfg.train_limit)
        if not self.train_data:
            raise ConfigError(f"task {task.name} split {cfg.train_split} is empty: check --data-dir / --train-limit")
        self.val_data = task.load(cfg.val_split, cfg.data_dir, limit=cfg.val_limit) if cfg.val_every else []
        self.backend = backend
        # the samples of one prompt share one row in the loss forward (exact; needs an eager/sdpa attention)
        self.pack = cfg.samples_per_prompt > 1 and rl_loss.can_pack(model)
        self.dtype = next(model.parameters()).dtype
        self.step, self.pos, self.best, self.stale = 0, 0, None, 0
        self.expert_path = cfg.run_dir / EXPERT_FILE
        self.metrics_path = cfg.run_dir / METRICS_FILE

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        return {"z": {n: t.detach().clone() for n, t in self.params.z.items()}, "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "step": self.step, "pos": self.pos, "best": self.best,
                "stale": self.stale, "config": {k: str(v) for k, v in asdict(self.cfg).items()}}

    def restore(self, st: dict) -> None:
        import torch

        with torch.no_grad():
            for n, t in self.params.z.items():
                t.copy_(st["z"][n])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.step, self.pos, self.best, self.stale = st["step"], st["pos"], st["best"], st["stale"]

    def save_expert(self, val: float | None) -> None:
        from .experts import build_meta, save_expert

        if self.rank:
            return
        training = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.cfg).items()}
        training["steps_done"] = self.step
        meta = build_meta(kind=self.cfg.kind, targets=self.cfg.targets, layers=self.cfg.layers, task=self.task.name,
                          labels=self.cfg.labels, training=training, val_score=val, **self.meta_base)
        save_expert(self.expert_path, self.params, meta)

    def write_metrics(self, record: dict) -> None:
        if self.rank:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------- one step
    def rollouts(self, examples, weights):
        cfg = self.cfg
        mine = [(i, e) for i, e in enumerate(examples)][self.rank :: self.world]
        if cfg.objective == "ntp":
            seqs = [(e.messages, e.solution, True, i) for i, e in mine]
            return seqs, [1.0] * len(seqs), [1.0] * len(seqs), [True] * len(seqs)
        rep = [(i, e) for i, e in mine for _ in range(cfg.samples_per_prompt)]
        settings = _settings(cfg, self.task, cfg.rollout == "greedy", cfg.seed * 1_000_003 + self.step * 97 + self.rank)
        self.backend.set_weights(weights)
        try:
            outs = self.backend.generate([e.messages for _, e in rep], settings)
        finally:
            self.backend.set_weights(None)
        correct = [s.correct for s in self.task.score_batch(outs, [e for _, e in rep])]
        rewards = [1.0 if c else float(cfg.neg_reward) for c in correct]
        groups = [i for i, _ in rep]
        adv = self.global_advantages(rewards, groups)
        limit = settings.max_new_tokens
        finished = [len(self.tokenizer(o, add_special_tokens=False)["input_ids"]) < limit for o in outs]
        seqs = [(e.messages, o, f, i) for (i, e), o, f in zip(rep, outs, finished)]
        return seqs, rewards, adv, correct

    def global_advantages(self, rewards, groups):
        cfg = self.cfg
        if self.world == 1 or cfg.baseline == "none" or cfg.samples_per_prompt > 1:
            return rl_loss.advantages(rewards, groups, cfg.baseline).tolist()
        import torch.distributed as dist

        gathered = [None] * self.world
        dist.all_gather_object(gathered, rewards)
        mean = sum(sum(g) for g in gathered) / sum(len(g) for g in gathered)
        return [r - mean for r in rewards]

    def train_step(self, examples) -> dict:
        import torch

        from . import svf

        cfg = self.cfg
        composed = svf.compose_params(self.factors, self.params)  # once per optimiser step, with autograd
        detached = {n: w.detach() for n, w in composed.items()}
        seqs, rewards, adv, correct = self.rollouts(examples, detached)
        leaves = {n: w.detach().requires_grad_(True) for n, w in composed.items()}  # grads accumulate here
        total = len(examples) * (cfg.samples_per_prompt if cfg.objective == "rl" else 1)
        pack = self.pack and cfg.objective == "rl"
        loss_sum, kl_sum, logp_sum = 0.0, 0.0, 0.0
        for start in range(0, len(seqs), cfg.micro_batch_size):
            chunk = seqs[start : start + cfg.micro_batch_size]
            batch = rl_loss.build_batch(self.tokenizer, [s[0] for s in chunk], [s[1] for s in chunk],
                                        [s[2] for s in chunk], device=self.factors.device, pack=pack,
                                        dtype=self.dtype)
            a = torch.tensor(adv[start : start + cfg.micro_batch_size])
            loss, st = rl_loss.micro_batch_loss(self.model, leaves, batch, a, cfg.kl_coef, cfg.logp_norm, total)
            if not torch.isfinite(loss):
                raise FloatingPointError("loss")
            loss.backward()
            loss_sum += float(loss.detach())
            logp_sum += st["logp_sum"]
            kl_sum += st["kl_sum"] or 0.0
        grads = [leaves[n].grad if leaves[n].grad is not None else torch.zeros_like(leaves[n]) for n in composed]
        torch.autograd.backward(list(composed.values()), grad_tensors=grads)
        stats = torch.tensor([loss_sum, kl_sum, logp_sum, float(sum(rewards)), float(sum(map(bool, correct))),
                              float(len(rewards))])
        if self.world > 1:
            import torch.distributed as dist

            for z in self.params.parameters():
                if z.grad is None:
                    z.grad = torch.zeros_like(z)
                dist.all_reduce(z.grad)
            dist.all_reduce(stats)
        loss_v, kl_v, logp_v, rew_v, cor_v, n_v = stats.tolist()
        return {"loss": loss_v, "kl": kl_v / n_v if cfg.kl_coef > 0 else None, "logp": logp_v / n_v,
                "reward": rew_v / n_v, "accuracy": cor_v / n_v if cfg.objective == "rl" else None}

    def validate(self) -> float:
        from . import svf

        weights = svf.merge(self.factors, svf.scales(self.params), self.params.renormalise)
        return _accuracy(self.backend, weights, self.task, self.val_data, self.cfg, self.rank, self.world)

    def checkpoint(self) -> None:
        if not self.rank:
            save_checkpoint(self.cfg.run_dir, self.state())


def _prepare_run_dir(tr: _Trainer, cfg: TrainConfig) -> None:
    if tr.rank == 0:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
    st = load_checkpoint(cfg.run_dir) if cfg.resume else None
    if st is not None:
        tr.restore(st)
        if tr.rank == 0 and tr.metrics_path.is_file():  # drop records written after the checkpoint
            lines = tr.metrics_path.read_text().splitlines()
            keep = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= tr.step]
            tr.metrics_path.write_text("".join(ln + "\n" for ln in keep))
        log.info("resumed %s at step %d", cfg.run_dir, tr.step)
    elif tr.rank == 0:
        tr.metrics_path.write_text("")


def train(config: TrainConfig, model, tokenizer, model_name: str, cache, task,
          progress: Callable[[int], None] | None = None, backend=None) -> TrainResult:
    """Train one SVF expert on ``task``; returns where the best expert is. ``progress(1)`` is called per step."""
    import torch

    cfg = config
    cfg.validate()
    if backend is None:
        from .generation import HFBackend

        backend = HFBackend(model, tokenizer)
    tr = _Trainer(cfg, model, tokenizer, model_name, cache, task, backend)
    _prepare_run_dir(tr, cfg)
    stopped = False
    try:
        if tr.step == 0 and cfg.val_every and tr.best is None:
            tr.best = tr.validate()
            tr.save_expert(tr.best)
            tr.write_metrics({"step": 0, "val_accuracy": tr.best})
        while tr.step < cfg.steps and not stopped:
            t0 = time.perf_counter()
            idx, new_pos = next_batch(len(tr.train_data), tr.pos, cfg.batch_size, cfg.seed)
            lr = tr.opt.param_groups[0]["lr"]
            try:
                rec = tr.train_step([tr.train_data[i] for i in idx])
                gnorm = float(torch.nn.utils.clip_grad_norm_(tr.params.parameters(), cfg.grad_clip))
                if not math.isfinite(gnorm):
                    raise FloatingPointError("gradient")
            except FloatingPointError as exc:
                tr.opt.zero_grad(set_to_none=True)
                raise TrainingError(
                    f"{exc} became NaN/inf at step {tr.step + 1}; last good checkpoint {cfg.run_dir / 'checkpoint.pt'}, "
                    f"best expert {tr.expert_path}: lower --lr, raise --kl-coef, or resume from the checkpoint"
                ) from None
            tr.opt.step()
            tr.sched.step()
            tr.opt.zero_grad(set_to_none=True)
            tr.step, tr.pos = tr.step + 1, new_pos
            rec = {"step": tr.step, **rec, "grad_norm": gnorm, "lr": lr, "seconds": time.perf_counter() - t0}
            if cfg.val_every and (tr.step % cfg.val_every == 0 or tr.step == cfg.steps):
                val = rec["val_accuracy"] = tr.validate()
                if tr.best is None or val > tr.best:
                    tr.best, tr.stale = val, 0
                    tr.save_expert(val)
                else:
                    tr.stale += 1
                    stopped = cfg.patience is not None and tr.stale >= cfg.patience
            tr.write_metrics(rec)
            if (cfg.checkpoint_every and tr.step % cfg.checkpoint_every == 0) or tr.step == cfg.steps or stopped:
                tr.checkpoint()
            if progress is not None:
                progress(1)
        if not cfg.val_every:
            tr.save_expert(None)
    finally:
        backend.set_weights(None)
    return TrainResult(tr.expert_path, tr.best, tr.step, cfg.run_dir, stopped, tr.metrics_path)
