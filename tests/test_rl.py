"""REINFORCE trainer: only z changes, KL is zero at the neutral scale, a toy reward is learned, resume is exact,
NaN stops with the checkpoint kept, and the config lists every problem at once."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from _svf_helpers import FakeTask, decomposed
from conftest import build_model
from t2cli import rl, rl_loss, svf
from t2cli.errors import ConfigError, TrainingError
from t2cli.experts import load_expert
from t2cli.rl import TrainConfig, train


def _cfg(run_dir, **kw):
    base = dict(run_dir=run_dir, targets="all", steps=2, batch_size=4, micro_batch_size=3, samples_per_prompt=2,
                val_every=0, checkpoint_every=1, kl_coef=0.05)
    base.update(kw)
    return TrainConfig(**base)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def llama_setup(tiny_llama, tmp_path):
    model, tok = tiny_llama
    return model, tok, decomposed(model, tmp_path)


def test_one_step_changes_only_z(llama_setup, tmp_path):
    model, tok, cache = llama_setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init = svf.init_params(cache, list(cache.matrices), seed=0)
    res = train(_cfg(tmp_path / "run", steps=1), model, tok, "tiny", cache, FakeTask())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in model.parameters())
    z = load_expert(res.expert_path).params.z
    assert set(z) == set(init.z)
    assert all(not torch.equal(z[n], init.z[n].detach()) for n in z)
    rec = [json.loads(x) for x in res.metrics_path.read_text().splitlines()]
    assert rec[-1]["step"] == 1 and {"reward", "accuracy", "kl", "grad_norm", "lr", "seconds"} <= set(rec[-1])


def test_kl_is_zero_at_neutral_scale(llama_setup):
    model, tok, cache = llama_setup
    factors = svf.Factors.load(cache, cache.matrices, model=model)
    batch = rl_loss.build_batch(tok, [({"role": "user", "content": "What is 2 + 3?"},)] * 2,
                                ["It is 5.", "The answer"], [True, False])
    neutral = svf.compose_params(factors, svf.init_params(factors, factors.names, noise_std=0.0))
    _, kl, ntok = rl_loss.sequence_terms(model, neutral, batch, kl=True)
    assert kl.abs().max().item() < 1e-6 and ntok.tolist()[0] > ntok.tolist()[1]
    moved = svf.compose_params(factors, svf.init_params(factors, factors.names, noise_std=1.0))
    _, kl2, _ = rl_loss.sequence_terms(model, moved, batch, kl=True)
    assert (kl2 > 1e-4).all()


def _first_token_mass(model, tok, weights, ids, prompt):
    batch = rl_loss.build_batch(tok, [prompt], ["x"], [False])
    n = int(batch.attention_mask.sum()) - 1  # last prompt position predicts the first completion token
    with torch.no_grad():
        logits = svf.functional_forward(model, weights or {}, input_ids=batch.input_ids[:, :n + 1]).logits[0, n - 1]
    return float(torch.softmax(logits, -1)[ids].sum())


def test_toy_reward_raises_its_probability(tiny_tokenizer, tmp_path):
    """Reward = the completion starts with one of a set of characters; its first-token mass must rise."""
    tok = tiny_tokenizer
    model = build_model("llama", vocab_size=len(tok))
    with torch.no_grad():  # a default-init tiny model is nearly uniform; sharper logits make the signal visible
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    cache = decomposed(model, tmp_path)
    first = {i: tok.decode([i])[:1] for i in range(len(tok))}
    counts = Counter(c for c in first.values() if c and c.isascii() and c.strip())
    chars, covered = set(), 0
    for c, k in counts.most_common():  # the most common first characters, about a third of the vocabulary
        if covered > len(tok) // 3:
            break
        chars.add(c)
        covered += k
    ids = [i for i, c in first.items() if c in chars]
    task = FakeTask(n=4, scorer=lambda c, e: c[:1] in chars, max_new_tokens=1)
    prompts = [e.messages for e in task.load("train")]
    before = sum(_first_token_mass(model, tok, None, ids, p) for p in prompts) / len(prompts)
    res = train(_cfg(tmp_path / "run", steps=8, lr=0.2, samples_per_prompt=8, micro_batch_size=32, kl_coef=0.0,
                     grad_clip=1.0), model, tok, "tiny", cache, task)
    expert = load_expert(res.expert_path)
    factors = svf.Factors.load(cache, expert.params.z, model=model)
    weights = svf.merge(factors, svf.scales(expert.params))
    after = sum(_first_token_mass(model, tok, weights, ids, p) for p in prompts) / len(prompts)
    assert after > before + 0.04, (before, after)


def test_resume_is_bit_identical(llama_setup, tmp_path):
    model, tok, cache = llama_setup
    full = train(_cfg(tmp_path / "full", steps=4, val_every=2), model, tok, "tiny", cache, FakeTask())

    class Stop(Exception):
        pass

    done = []

    def interrupt(n):
        done.append(n)
        if len(done) == 2:
            raise Stop

    with pytest.raises(Stop):
        train(_cfg(tmp_path / "part", steps=4, val_every=2), model, tok, "tiny", cache, FakeTask(), progress=interrupt)
    resumed = train(_cfg(tmp_path / "part", steps=4, val_every=2, resume=True), model, tok, "tiny", cache, FakeTask())
    assert resumed.steps_done == 4
    a, b = load_expert(full.expert_path).params.z, load_expert(resumed.expert_path).params.z
    assert all(torch.equal(a[n], b[n]) for n in a)
    ca = torch.load(full.run_dir / "checkpoint.pt", weights_only=False)["z"]
    cb = torch.load(resumed.run_dir / "checkpoint.pt", weights_only=False)["z"]
    assert all(torch.equal(ca[n], cb[n]) for n in ca)
    steps = [json.loads(x)["step"] for x in resumed.metrics_path.read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]


def test_nan_loss_stops_and_keeps_checkpoint(llama_setup, tmp_path, monkeypatch):
    model, tok, cache = llama_setup
    real = rl_loss.micro_batch_loss
    calls = []

    def flaky(*args, **kw):
        loss, stats = real(*args, **kw)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 4 else loss), stats  # 3 micro-batches per step: NaN in step 2

    monkeypatch.setattr(rl_loss, "micro_batch_loss", flaky)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingError, match="NaN"):
        train(_cfg(tmp_path / "run", steps=3, val_every=1), model, tok, "tiny", cache, FakeTask())
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 1
    assert load_expert(tmp_path / "run" / rl.EXPERT_FILE).params.z
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_ntp_objective_lowers_solution_loss(llama_setup, tmp_path):
    model, tok, cache = llama_setup
    task = FakeTask(n=4)
    exs = task.load("train")
    batch = rl_loss.build_batch(tok, [e.messages for e in exs], [e.solution for e in exs], [True] * 4)
    base_lp, _, _ = rl_loss.sequence_terms(model, None, batch, kl=False)
    res = train(_cfg(tmp_path / "run", objective="ntp", steps=4, lr=0.05, kl_coef=0.0), model, tok, "tiny", cache, task)
    expert = load_expert(res.expert_path)
    factors = svf.Factors.load(cache, expert.params.z, model=model)
    lp, _, _ = rl_loss.sequence_terms(model, svf.merge(factors, svf.scales(expert.params)), batch, kl=False)
    assert lp.mean() > base_lp.mean()


def test_config_lists_every_problem(tmp_path):
    with pytest.raises(ConfigError) as err:
        TrainConfig(run_dir=tmp_path, rollout="beam", lr=-1, steps=0, neg_reward=2, patience=2, val_every=0)
    msg = str(err.value)
    for word in ("rollout", "lr", "steps", "neg_reward", "patience"):
        assert word in msg


def test_advantages():
    r = [1.0, -1.0, -1.0, -1.0]
    assert rl_loss.advantages(r, [0, 1, 2, 3], "none").tolist() == r
    assert rl_loss.advantages(r, [0, 1, 2, 3], "mean").tolist() == [1.5, -0.5, -0.5, -0.5]
    assert rl_loss.advantages(r, [0, 0, 1, 1], "mean").tolist() == [1.0, -1.0, 0.0, 0.0]


def test_real_arc_easy_task_one_step(llama_setup, tmp_path, shared_data_dir):
    from t2cli.tasks import get_task

    model, tok, cache = llama_setup
    cfg = _cfg(tmp_path / "run", steps=1, val_every=1, train_limit=4, val_limit=4, max_new_tokens=4,
               data_dir=str(shared_data_dir))
    res = train(cfg, model, tok, "tiny", cache, get_task("arc_easy"))
    expert = load_expert(res.expert_path)
    assert expert.meta["task"] == "arc_easy" and res.steps_done == 1 and res.best_val is not None
