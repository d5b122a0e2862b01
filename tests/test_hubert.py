"""HubertFeatures vs transformers' HubertModel (the oracle) on tiny random weights in the Hub layout."""

from __future__ import annotations

import pytest
import torch

from bark_cli.errors import CheckpointError
from bark_cli.models.hubert import QUANTIZER_LAYER, HubertConfig, HubertFeatures, fold_weight_norm_dim2

pytest.importorskip("transformers")

from tiny_clone import hubert_model, legacy_weight_norm, write_hubert_folder  # noqa: E402


def _oracle_layer(model, samples: torch.Tensor, layer: int) -> torch.Tensor:
    with torch.no_grad():
        out = model(samples, output_hidden_states=True)
    # hidden_states[0] is the input to the first transformer layer, [i] the output of the i-th.
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    return out.hidden_states[layer]


@pytest.mark.parametrize("legacy", [False, True], ids=["safetensors", "legacy-bin"])
def test_layer_9_matches_transformers(tmp_path, legacy):
    from bark_cli.cloning import load_hubert_model

    folder = write_hubert_folder(tmp_path / "hubert", seed=1, legacy=legacy)
    ours = load_hubert_model(folder)
    assert ours.num_layers == QUANTIZER_LAYER == 9 and len(ours.encoder.layers) == 9
    oracle = hubert_model(seed=1)
    gen = torch.Generator().manual_seed(2)
    for length in (400, 16_000, 37_123):  # one frame; a second; an odd length
        samples = 0.3 * torch.randn(1, length, generator=gen)
        want = _oracle_layer(oracle, samples, QUANTIZER_LAYER)
        got = ours(samples)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        # and not the neighbouring layers' output
        assert (got - _oracle_layer(oracle, samples, QUANTIZER_LAYER - 1)).abs().max() > 1e-2
    assert ours.min_samples() == 400


def test_every_layer_count_matches(tmp_path):
    from bark_cli.models.hubert import load_hubert

    oracle = hubert_model(seed=3)
    config = HubertConfig.from_dict(oracle.config.to_dict())
    samples = 0.3 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(4))
    for layers in (1, 4, 10):
        ours = load_hubert(config, oracle.state_dict(), layers)
        torch.testing.assert_close(ours(samples), _oracle_layer(oracle, samples, layers), atol=1e-4, rtol=0)


def test_weight_norm_fold_is_over_dims_0_and_1():
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(8, 8, 5, groups=2), name="weight", dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(3.0)
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    assert g.shape == (1, 1, 5)
    torch.testing.assert_close(fold_weight_norm_dim2(g, v), conv.weight, atol=1e-6, rtol=0)


def test_the_real_size_is_hubert_base():
    with torch.device("meta"):
        model = HubertFeatures(HubertConfig())
    params = sum(p.numel() for p in model.parameters())
    # HuBERT base has 94.4 M parameters; three of its twelve 7.1 M layers are not built.
    assert 72e6 < params < 74e6


def test_bad_checkpoints_are_refused(tmp_path):
    from bark_cli.models.hubert import load_hubert

    oracle = hubert_model(seed=0)
    config = HubertConfig.from_dict(oracle.config.to_dict())
    state = oracle.state_dict()
    short = {k: v for k, v in state.items() if "feature_projection.projection.weight" not in k}
    with pytest.raises(CheckpointError, match="lack key feature_projection.projection.weight"):
        load_hubert(config, short)
    wide = dict(state, **{"encoder.layer_norm.weight": torch.ones(33)})
    with pytest.raises(CheckpointError, match="encoder.layer_norm.weight has shape"):
        load_hubert(config, wide)
    with pytest.raises(CheckpointError, match="do_stable_layer_norm"):
        HubertConfig.from_dict({**oracle.config.to_dict(), "do_stable_layer_norm": True})
    with pytest.raises(CheckpointError, match="inconsistent"):
        HubertConfig.from_dict({**oracle.config.to_dict(), "conv_kernel": [10, 3]})
    assert legacy_weight_norm(state).keys() != state.keys()
