"""`t2 generate`: two-pass answering of free prompts, for pipelines.

Prompts come as arguments or as JSONL on stdin (``{"prompt": "..."}`` or ``{"messages": [...]}``; other fields such
as ``id`` are copied to the output). Pass 1 (``prompt`` or ``cls`` strategy, see ``t2cli.adapt.dispatch``) picks an
expert per prompt; pass 2 answers the prompts grouped by their expert, so each batch runs with one set of weights.
Each expert's W' is composed once and cached; switching experts afterwards is a pointer swap per matrix (``set_weights``).
"others" and unparsable first-pass answers are answered by the base weights, and the output says so
(``"expert": "base"``) — never silently by the last loaded expert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import ConfigError


def read_prompts(lines: Iterable[str]) -> list[dict]:
    """Parse JSONL lines into records holding ``prompt`` (text) or ``messages``; blank lines are skipped."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"stdin line {n} is not JSON: send one {{\"prompt\": ...}} object per line") from None
        if not isinstance(rec, dict) or not (isinstance(rec.get("prompt"), str) or isinstance(rec.get("messages"), list)):
            raise ConfigError(f"stdin line {n} has no \"prompt\" string (or \"messages\" list): "
                              "send {\"prompt\": \"...\"} per line")
        out.append(rec)
    return out


@dataclass
class GenerateConfig:
    prompts: Sequence[dict]
    experts: Sequence[Path]
    strategy: str = "prompt"
    classifier: Path | None = None
    model: str | None = None
    label_mode: str = "auto"
    max_new_tokens: int = 256
    temperature: float = 0.0
    batch_size: int = 8
    seed: int = 0
    svd_cache: Path | None = None
    device: str = "auto"
    dtype: str = "auto"

    def check(self) -> None:
        p = []
        if not self.prompts:
            p.append("no prompts (pass them as arguments or JSONL on stdin)")
        if self.strategy not in ("prompt", "cls"):
            p.append(f"--strategy {self.strategy} (use prompt or cls; fewshot needs a task: `t2 adapt`)")
        if self.strategy == "cls" and self.classifier is None:
            p.append("--strategy cls needs --classifier FILE")
        if not self.experts:
            p.append("no --experts given")
        if self.max_new_tokens < 1:
            p.append(f"--max-new-tokens {self.max_new_tokens} (use >= 1)")
        if p:
            raise ConfigError("bad generate options: " + "; ".join(p))


def run_generate(cfg: GenerateConfig, progress=None) -> tuple[list[dict], dict]:
    """Answer every prompt; returns (records in input order, stats)."""
    import time
    from collections import Counter

    from .adapt.cls import load_classifier
    from .adapt.dispatch import Router, as_messages, label_experts_for
    from .experts import check_compatible, load_expert
    from .generation import GenerationSettings, HFBackend
    from .models import load_model
    from .svd import find_cache

    cfg.check()
    classifier = load_classifier(cfg.classifier) if cfg.strategy == "cls" else None
    experts = label_experts_for([load_expert(p) for p in cfg.experts], cfg.label_mode, classifier)
    loaded = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    cache = find_cache(loaded.model, loaded.ref.name, cfg.svd_cache)
    for e in list(experts.values()) + ([classifier] if classifier else []):
        check_compatible(e, cache.fingerprint, cache, loaded.ref.name)
    router = Router(HFBackend(loaded.model, loaded.tokenizer), loaded.model, loaded.ref.name, experts, cfg.strategy,
                    classifier, cache.path, cfg.batch_size)
    prompts = [as_messages(r["messages"] if "messages" in r else r["prompt"]) for r in cfg.prompts]
    settings = GenerationSettings(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                  batch_size=cfg.batch_size, seed=cfg.seed)
    t0 = time.perf_counter()
    choices = router.choose(prompts)
    t1 = time.perf_counter()
    _, answers = router.answer(prompts, settings, choices=choices, progress=progress)
    t2 = time.perf_counter()
    records = []
    for rec, c, a in zip(cfg.prompts, choices, answers):
        extra = {k: v for k, v in rec.items() if k not in ("prompt", "messages")}
        records.append({**extra, "prompt": rec.get("prompt", rec.get("messages")), "expert": c.route or "base",
                        "label": c.label, "first_pass": c.raw, "answer": a})
    stats = {"model": loaded.ref.name, "strategy": cfg.strategy, "prompts": len(records),
             "experts": dict(Counter(r["expert"] for r in records)), "pass1_seconds": round(t1 - t0, 3),
             "pass2_seconds": round(t2 - t1, 3)}
    return records, stats
