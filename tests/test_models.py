"""Per-stage logits against transformers' Bark sub-models on the same weights (float32, 1e-5)."""

from __future__ import annotations

import pytest
import torch

from bark_cli.weights import load_weights

TOL = dict(rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def ours(tiny_checkpoint):
    return load_weights(tiny_checkpoint)


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("stage,vocab", [("semantic", 129_600), ("coarse", 12_096)])
def test_causal_logits_match_transformers(ours, hf_tiny, stage, vocab):
    model = getattr(ours, stage)
    reference = hf_tiny.semantic if stage == "semantic" else hf_tiny.coarse_acoustics
    ids = torch.randint(0, vocab, (2, 300), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(input_ids=ids, use_cache=False).logits
        got = model(ids=ids, all_logits=True)
    torch.testing.assert_close(got, expected, **TOL)
    print(f"{stage}: max |logit diff| = {max_diff(got, expected):.2e}")


def test_semantic_merged_prefix_matches_transformers(ours, hf_tiny):
    """The first semantic step: summed text + history embeddings, then the infer token."""
    from bark_cli.generation import semantic_prefix
    from bark_cli.voice import validate_voice
    import numpy as np

    rng = np.random.default_rng(0)
    voice = validate_voice({
        "semantic_prompt": rng.integers(0, 10_000, 300),
        "coarse_prompt": rng.integers(0, 1024, (2, 451)),
        "fine_prompt": rng.integers(0, 1024, (8, 451)),
    })
    text = [[31178, 11356, 119]]
    cfg = ours.generation
    with torch.no_grad():
        embeds = semantic_prefix(ours.semantic, text, voice, cfg)
        got = ours.semantic(embeds=embeds, all_logits=True)
        ids = torch.full((1, 256), cfg.text_pad_token)
        ids[0, :3] = torch.tensor(text[0]) + cfg.text_encoding_offset
        history = torch.from_numpy(voice.semantic_prompt[-256:])[None]
        emb = hf_tiny.semantic.input_embeds_layer
        ref_embeds = torch.cat([emb(ids) + emb(history), emb(torch.tensor([[cfg.semantic_infer_token]]))], 1)
        expected = hf_tiny.semantic(inputs_embeds=ref_embeds, use_cache=False).logits
    torch.testing.assert_close(got, expected, **TOL)


@pytest.mark.parametrize("stage,vocab", [("semantic", 129_600), ("coarse", 12_096)])
def test_kv_cache_decode_equals_full_forward(ours, stage, vocab):
    """Prefill + one-token steps through the preallocated cache give the full pass's logits."""
    model = getattr(ours, stage)
    ids = torch.randint(0, vocab, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids=ids, all_logits=True)
        model.setup_cache(2)
        steps = [model(ids=ids[:, :30], start=0)]
        for pos in range(30, 40):
            steps.append(model(ids=ids[:, pos : pos + 1], start=pos))
        model.clear_cache()
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 29:], **TOL)


@pytest.mark.parametrize("stage,vocab", [("semantic", 129_600), ("coarse", 12_096)])
def test_static_step_equals_sliced_step(ours, stage, vocab):
    """The CUDA-graph step (position in a tensor, whole cache under a mask) gives the logits of
    the step that slices the cache, at every position, with stale values past the end (a coarse
    window that prefills again leaves the longer window's keys there)."""
    model = getattr(ours, stage)
    ids = torch.randint(0, vocab, (2, 40), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(ids=ids, all_logits=True)
        model.setup_cache(2)
        for block in model.layers:
            block.attn.kv_cache.kv.fill_(1e3)  # must be masked out
        steps = [model(ids=ids[:, :30], start=0)]
        for pos in range(30, 40):
            steps.append(model(ids=ids[:, pos : pos + 1], start=torch.tensor(pos)))
        model.clear_cache()
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 29:], **TOL)


@pytest.mark.parametrize("graphed", [False, True])
def test_decoding_steps_give_the_full_forward_logits(ours, graphed):
    """decoding.kv_cache's step (sliced, or the graph step run eagerly off CUDA) after a prefill
    gives the full pass's logits, and the cache is gone afterwards."""
    from bark_cli.decoding import kv_cache

    model = ours.coarse
    ids = torch.randint(0, 12_096, (2, 40), generator=torch.Generator().manual_seed(6))
    rows = slice(10_000, 11_024)
    with torch.no_grad():
        full = model(ids=ids, all_logits=True)
        with kv_cache(model, 2, graphed) as step:
            steps = [model(ids=ids[:, :30], start=0)[:, -1, rows]]
            steps += [step(ids[:, pos : pos + 1], pos, rows) for pos in range(30, 40)]
    assert model.cache_batch_size == 0 and model.layers[0].attn.kv_cache is None
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 29:, rows], **TOL)


def test_a_multi_token_step_starts_at_position_0(ours):
    model = ours.semantic
    with torch.no_grad(), pytest.raises(ValueError, match="position 0"):
        model(ids=torch.zeros(1, 3, dtype=torch.long), start=5)


def test_bfloat16_on_cpu_keeps_a_float32_cache(ours):
    """Under bfloat16 on the CPU the KV cache is float32 (faster attention there); cached steps,
    sliced or static, stay as close to the float32 model as the bfloat16 full pass is."""
    import copy

    model32 = ours.semantic
    model = copy.deepcopy(model32).to(torch.bfloat16)
    assert model.cache_dtype == torch.float32 and model32.cache_dtype == torch.float32
    ids = torch.randint(0, 129_600, (2, 40), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = model32(ids=ids, all_logits=True)[:, 29:]
        full_error = (model(ids=ids, all_logits=True)[:, 29:].float() - reference).abs().max()
        for static in (False, True):
            model.setup_cache(2)
            assert {block.attn.kv_cache.kv.dtype for block in model.layers} == {torch.float32}
            for block in model.layers:
                # As GraphStep does: a static step weighs unwritten positions by 0, and 0 times
                # a NaN left in fresh memory is NaN.
                block.attn.kv_cache.kv.zero_()
            steps = [model(ids=ids[:, :30], start=0)]
            for pos in range(30, 40):
                steps.append(model(ids=ids[:, pos : pos + 1], start=torch.tensor(pos) if static else pos))
            model.clear_cache()
            got = torch.cat(steps, 1)
            assert got.dtype == torch.bfloat16
            assert (got.float() - reference).abs().max() <= 1.5 * full_error + 1e-3


def test_fine_logits_match_transformers(ours, hf_tiny):
    codes = torch.randint(0, 1056, (2, 1024, 8), generator=torch.Generator().manual_seed(3))
    worst = 0.0
    with torch.no_grad():
        for book in range(1, 8):
            expected = hf_tiny.fine_acoustics(book, codes).logits
            got = ours.fine(book, codes)
            torch.testing.assert_close(got, expected, **TOL)
            worst = max(worst, max_diff(got, expected))
    print(f"fine: max |logit diff| = {worst:.2e}")


def test_fine_heads_are_tied_to_embeddings(ours):
    fine = ours.fine
    for i, head in enumerate(fine.lm_heads):
        assert head.weight.data_ptr() == fine.input_embeds_layers[i + 1].weight.data_ptr()
    assert fine.input_embeds_layers[0].weight.data_ptr() not in {h.weight.data_ptr() for h in fine.lm_heads}


@pytest.mark.parametrize("values", [3072, 8 * 3072, 1 << 17])  # a decode step, a batch of 8, a prefill
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gelu_is_exact_gelu_on_either_kernel(values, dtype):
    from bark_cli.models.kernels import gelu

    x = torch.linspace(-6, 6, values, dtype=torch.float64)
    expected = x * 0.5 * (1 + torch.erf(x / 2**0.5))  # Bark's GELU, in float64
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2  # oneDNN's erf is good to ~1e-6
    torch.testing.assert_close(gelu(x.to(dtype)).double(), expected, rtol=tolerance, atol=tolerance)
    assert torch.backends.mkldnn.enabled  # switched back for everything else
    torch.backends.mkldnn.enabled = False  # a user's own setting is left alone
    try:
        gelu(x.float())
        assert not torch.backends.mkldnn.enabled
    finally:
        torch.backends.mkldnn.enabled = True


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 96), (2, 7, 96), (5, 96)])  # a decode step, a prefill, 2-D
def test_linear_matches_float64_on_every_path(bias, shape):
    """Linear's oneDNN product (inference) and its F.linear fallback (autograd) compute the same
    thing: x W^T + b, optionally a slice of output features, optionally through the erf GELU."""
    from bark_cli.models.kernels import Linear

    torch.manual_seed(0)
    layer = Linear(96, 160, bias=bias)
    x = torch.randn(shape)
    w64, b64 = layer.weight.double(), None if layer.bias is None else layer.bias.double()
    for rows in (None, slice(32, 96)):
        for gelu_out in (False, True):
            w, b = (w64, b64) if rows is None else (w64[rows], None if b64 is None else b64[rows])
            expected = x.double() @ w.T + (0 if b is None else b)
            if gelu_out:
                expected = expected * 0.5 * (1 + torch.erf(expected / 2**0.5))
            with torch.inference_mode():
                fast = layer(x, rows, gelu_out)
            slow = layer(x, rows, gelu_out)  # grad enabled: the differentiable path
            assert fast.shape == slow.shape == expected.shape
            torch.testing.assert_close(fast.double(), expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(slow.double(), expected, rtol=1e-5, atol=1e-5)
            slow.sum().backward()  # still trainable outside inference
            assert layer.weight.grad is not None
            layer.weight.grad = None


@pytest.mark.parametrize("gelu_out", [False, True])
@pytest.mark.parametrize("rows", [1, 8])  # a decode step (PyTorch's own kernel), a batch (oneDNN)
def test_bfloat16_linear_matches_float64(rows, gelu_out):
    from bark_cli.models.kernels import Linear

    torch.manual_seed(0)
    layer = Linear(256, 192).to(torch.bfloat16)
    x = torch.randn(rows, 1, 256).bfloat16()
    expected = x.double() @ layer.weight.double().T + layer.bias.double()
    if gelu_out:
        expected = expected * 0.5 * (1 + torch.erf(expected / 2**0.5))
    with torch.inference_mode():
        got = layer(x, gelu_out=gelu_out)
    assert got.dtype == torch.bfloat16 and torch.backends.mkldnn.enabled  # switched back
    torch.testing.assert_close(got.double(), expected, rtol=2e-2, atol=5e-2)


def test_bfloat16_rows_fuse_the_gelu_where_pytorch_uses_onednn():
    """Many bfloat16 rows run oneDNN's product with the GELU in it, exactly where PyTorch would
    send the product to oneDNN itself; one row keeps PyTorch's own kernel."""
    from torch.profiler import ProfilerActivity, profile

    from bark_cli.models.kernels import BY_FEATURES, ONEDNN_BF16_LINEAR, Linear, use

    if not ONEDNN_BF16_LINEAR:
        pytest.skip("this CPU or PyTorch build has no oneDNN bfloat16 product")
    layer = Linear(64, 96).to(torch.bfloat16)

    def ops(x):
        with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode(), use(BY_FEATURES):
            layer(x, gelu_out=True)
        return {event.key for event in prof.key_averages()}

    many = ops(torch.randn(16, 64).bfloat16())
    assert "mkldnn::_linear_pointwise" in many and "aten::gelu" not in many
    assert "mkldnn::_linear_pointwise" not in ops(torch.randn(1, 64).bfloat16())


def test_fine_head_rows_are_the_kept_logits(ours):
    """Generation keeps codebook ids 0..1023 of the fine head's 1056: computing only those rows
    gives the same logits."""
    codes = torch.randint(0, 1056, (2, 1024, 8), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        for book in (2, 7):
            kept = ours.fine(book, codes, rows=slice(0, 1024))
            assert kept.shape == (2, 1024, 1024)
            torch.testing.assert_close(kept, ours.fine(book, codes)[:, :, :1024], **TOL)


def test_float32_cpu_linears_run_on_onednn():
    """The point of Linear: where the choice says oneDNN, float32 products in inference on the CPU
    go to oneDNN (with the GELU fused), not to MKL's matrix-vector path; a bfloat16 row and
    autograd keep F.linear."""
    from bark_cli.models.gpt import MLP
    from bark_cli.models.kernels import BY_FEATURES, ONEDNN_LINEAR, use
    from bark_cli.config import GPTConfig
    from torch.profiler import ProfilerActivity, profile

    if not ONEDNN_LINEAR:
        pytest.skip("oneDNN linears run only on x86-64 PyTorch builds with oneDNN, not here")
    config = GPTConfig(block_size=16, input_vocab_size=8, output_vocab_size=8, num_layers=1, num_heads=2,
                       hidden_size=32, dropout=0.0, bias=True)
    mlp = MLP(config)

    def ops(module, x, **mode):
        with profile(activities=[ProfilerActivity.CPU]) as prof, use(BY_FEATURES):
            with torch.inference_mode(**mode):
                module(x)
        return {event.key for event in prof.key_averages()}

    x = torch.randn(1, 1, 32)
    fast = ops(mlp, x)
    assert "mkldnn::_linear_pointwise" in fast and "aten::gelu" not in fast
    assert "mkldnn::_linear_pointwise" not in ops(mlp, x, mode=False)
    assert "mkldnn::_linear_pointwise" not in ops(mlp.to(torch.bfloat16), x.bfloat16())
