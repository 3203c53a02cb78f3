"""Target selection across families, and the layer syntax."""

import pytest

from conftest import TINY_ARCHS, build_model
from t2cli.arch import all_targets, parse_layers, select_targets
from t2cli.errors import ArchitectureError, ConfigError


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_every_family_has_attention_and_mlp_targets(arch, tiny_tokenizer):
    model = build_model(arch, len(tiny_tokenizer))
    targets = all_targets(model)
    assert {t.group for t in targets} == {"attn", "mlp"}
    assert {t.layer for t in targets} == {0, 1}
    assert all(t.name.endswith(".weight") for t in targets)


def test_llama_has_seven_matrices_per_layer_and_phi3_four(tiny_tokenizer):
    assert len(all_targets(build_model("llama", len(tiny_tokenizer)))) == 14
    assert len(all_targets(build_model("phi3", len(tiny_tokenizer)))) == 8


def test_select_by_group_role_regex_and_layers(tiny_llama):
    model, _ = tiny_llama
    assert {t.role for t in select_targets(model, "mlp")} == {"gate_proj", "up_proj", "down_proj"}
    assert {t.role for t in select_targets(model, "attn")} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert [t.role for t in select_targets(model, "q_proj,v_proj", "1")] == ["q_proj", "v_proj"]
    assert len(select_targets(model, r"layers\.0\..*down")) == 1
    assert {t.layer for t in select_targets(model, "all", "half")} == {0}


def test_pattern_matching_nothing_is_a_config_error(tiny_llama):
    model, _ = tiny_llama
    with pytest.raises(ConfigError, match="matches no matrix"):
        select_targets(model, "no_such_proj")


def test_unknown_architecture_lists_modules_found():
    import torch

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"model_type": "odd"})()
            self.layers = torch.nn.ModuleList([torch.nn.ModuleDict({"wq": torch.nn.Linear(4, 4)})])

    with pytest.raises(ArchitectureError, match="wq"):
        all_targets(Odd())


@pytest.mark.parametrize("spec,expected", [("all", [0, 1, 2, 3]), ("half", [0, 2]), ("1-2", [1, 2]), ("0,3", [0, 3])])
def test_parse_layers(spec, expected):
    assert parse_layers(spec, 4) == expected


@pytest.mark.parametrize("spec", ["7", "x", "2-9"])
def test_parse_layers_rejects_bad_specs(spec):
    with pytest.raises(ConfigError):
        parse_layers(spec, 4)
