"""SAE math on hand-computed tensors, and the contract every registered architecture must keep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import sae_cfg
from vista.saes import SAE_REGISTRY, BatchTopKConfig, TopKConfig, make_sae, ops
from vista.saes.base import SAE
from vista.saes.io import load_sae, save_sae
from vista.saes.topk import auxk_loss

ARCHS = sorted(SAE_REGISTRY)


def _hand_sae(arch: str = "topk", k: int = 2) -> SAE:
    """d_model 2, d_sae 3 with weights chosen so every number below can be checked by hand."""
    cfg_cls = TopKConfig if arch == "topk" else BatchTopKConfig
    sae = make_sae(cfg_cls(d_model=2, d_sae=3, k=k, k_aux=1))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, 0.5]))
        sae.b_dec.zero_()
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    return sae


TRAINABLE = [a for a in ARCHS if SAE_REGISTRY[a].trainable]


def _trained_like(arch: str, d_model: int = 8, d_sae: int = 32, seed: int = 0) -> SAE:
    """An SAE of ``arch`` with non-trivial biases and learned state (thresholds) after 3 steps."""
    if getattr(SAE_REGISTRY[arch], "fitted", False):  # baselines: fitted to data, not trained
        sae = make_sae(sae_cfg(arch, d_model, d_sae, seed=seed))
        sae.fit_(torch.randn(256, d_model, generator=torch.Generator().manual_seed(seed)))
        return sae.eval()
    base_arch = arch if SAE_REGISTRY[arch].trainable else "topk"
    sae = make_sae(sae_cfg(base_arch, d_model, d_sae, seed=seed))
    torch.manual_seed(seed)
    sae.init_from_data_(torch.randn(256, d_model))
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name.startswith("b_"):
                p.add_(torch.randn_like(p) * 0.1)
    sae.train()
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for _ in range(3):  # sets learned state such as the BatchTopK threshold
        out = sae.training_forward(torch.randn(64, d_model))
        opt.zero_grad()
        out.loss.backward()
        sae.before_optimizer_step()
        opt.step()
        sae.after_optimizer_step()
    opt.zero_grad(set_to_none=True)
    sae.eval()
    if not SAE_REGISTRY[arch].trainable:
        from vista.saes.pursuit import pursuit_encoder

        sae.canonicalize_()
        return pursuit_encoder(sae, arch, k=3)
    return sae


# -- TopK -----------------------------------------------------------------------------------------
def test_topk_codes_and_reconstruction_by_hand() -> None:
    sae = _hand_sae("topk", k=2)
    x = torch.tensor([[1.0, 2.0]])
    # pre = [1, 2, -1 + 2 + 0.5] = [1, 2, 1.5]; the top 2 are latents 1 and 2.
    torch.testing.assert_close(sae.encode(x), torch.tensor([[0.0, 2.0, 1.5]]))
    # x_hat = 2 * [0, 1] + 1.5 * [0.6, 0.8] = [0.9, 3.2]
    torch.testing.assert_close(sae(x).x_hat, torch.tensor([[0.9, 3.2]]))
    out = sae.training_forward(torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
    # second token: pre = [3, 0, -3 + 0.5] -> top 2 = latent 0 (3) and latent 1 (0, inactive)
    torch.testing.assert_close(out.x_hat, torch.tensor([[0.9, 3.2], [3.0, 0.0]]))
    assert out.fired.tolist() == [True, True, True]
    assert float(out.l0) == pytest.approx(1.5)
    # batch FVU: residuals [0.1, -1.2] and [0, 0]; variance around the mean [2, 1]: 2 * (1 + 1)
    assert float(out.recon_loss) == pytest.approx((0.1**2 + 1.2**2) / 4.0, rel=1e-5)


def test_topk_never_keeps_negative_values() -> None:
    sae = _hand_sae("topk", k=3)
    x = torch.tensor([[1.0, -2.0]])  # pre = [1, -2, -3 + 0.5]
    torch.testing.assert_close(sae.encode(x), torch.tensor([[1.0, 0.0, 0.0]]))


# -- BatchTopK --------------------------------------------------------------------------------------
def test_batchtopk_selects_over_the_whole_batch_and_learns_a_threshold() -> None:
    sae = _hand_sae("batchtopk", k=1).train()
    x = torch.tensor([[3.0, 2.0], [0.5, 0.2]])
    # pre = [[3, 2, -0.5], [0.5, 0.2, 0.2]]; k * n = 2 largest of the batch: 3 and 2, both token 0.
    out = sae.training_forward(x)
    torch.testing.assert_close(out.x_hat, torch.tensor([[3.0, 2.0], [0.0, 0.0]]))
    assert out.fired.tolist() == [True, True, False]
    assert float(out.l0) == pytest.approx(1.0)
    # The threshold starts at the smallest selected activation.
    assert sae.threshold.tolist() == [2.0, 2.0, 2.0]
    sae.training_forward(torch.tensor([[4.0, 1.0], [0.0, 0.0]]))  # selects 4 and 1: batch min 1
    m = sae.cfg.threshold_momentum
    assert float(sae.threshold[0]) == pytest.approx(m * 2.0 + (1 - m) * 1.0)
    # Inference: active where pre > threshold, per token.
    sae.eval()
    codes = sae.encode(torch.tensor([[3.0, 2.5], [1.0, 1.0]]))
    t = float(sae.threshold[0])
    expected = torch.tensor([[3.0, 2.5, 0.0], [0.0, 0.0, 0.0]])
    expected[expected <= t] = 0
    torch.testing.assert_close(codes, expected)


def test_batchtopk_training_selection_depends_on_the_batch_but_inference_does_not() -> None:
    sae = _trained_like("batchtopk")
    x = torch.randn(16, 8)
    batch = sae.encode(x)
    alone = torch.cat([sae.encode(x[i : i + 1]) for i in range(16)])
    torch.testing.assert_close(batch, alone)
    assert sae.has_threshold and (batch != 0).sum(1).float().mean() > 0


def test_batchtopk_without_a_threshold_falls_back_to_per_token_topk() -> None:
    sae = make_sae(BatchTopKConfig(d_model=4, d_sae=8, k=2)).eval()
    x = torch.randn(5, 4)
    assert not sae.has_threshold
    torch.testing.assert_close(sae.encode(x), ops.topk_mask_dense(torch.relu(sae.pre_acts(x)), 2))


# -- AuxK -------------------------------------------------------------------------------------------
def test_auxk_on_dead_latents_by_hand() -> None:
    sae = _hand_sae("topk", k=1)
    x = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    pre = sae.pre_acts(x)  # [[1, 2, 1.5], [2, 1, -0.5]]
    dead = torch.tensor([False, False, True])
    # Live reconstruction with k=1: token 0 -> 2 * e2 = [0, 2]; token 1 -> 2 * e1 = [2, 0]
    residual = x - torch.tensor([[0.0, 2.0], [2.0, 0.0]])  # [[1, 0], [0, 1]]
    # Dead latent 2 only: token 0 -> relu(1.5) * [0.6, 0.8]; token 1 -> relu(-0.5) = 0
    e_hat = torch.tensor([[0.9, 1.2], [0.0, 0.0]])
    sq_err = float(((e_hat - residual) ** 2).sum())  # 0.01 + 1.44 + 0 + 1 = 2.45
    var_e = float(((residual - residual.mean(0)) ** 2).sum())  # 4 * 0.25 = 1
    dead_idx = dead.nonzero().squeeze(1)
    got = auxk_loss(pre[:, dead_idx], dead_idx, residual, sae.W_dec, k_aux=1)
    assert float(got.detach()) == pytest.approx(sq_err / var_e)
    none = torch.zeros(0, dtype=torch.long)
    assert float(auxk_loss(pre[:, none], none, residual, sae.W_dec, 1)) == 0.0
    out = sae.training_forward(x, dead)
    assert float(out.aux_loss) == pytest.approx(sae.cfg.aux_coeff * sq_err / var_e, rel=1e-5)


def test_auxk_gradient_reaches_only_dead_latents() -> None:
    sae = _trained_like("topk")
    sae.train()
    dead = torch.zeros(32, dtype=torch.bool)
    dead[5:9] = True
    x = torch.randn(128, 8)
    pre = sae.pre_acts(x)
    with torch.no_grad():
        residual = x - sae(x).x_hat
    dead_idx = dead.nonzero().squeeze(1)
    auxk_loss(pre[:, dead_idx], dead_idx, residual, sae.W_dec, k_aux=4).backward()
    g = sae.W_dec.grad
    assert g is not None
    assert g[~dead].abs().sum() == 0 and g[dead].abs().sum() > 0
    assert sae.W_enc.grad is not None and sae.W_enc.grad[:, ~dead].abs().sum() == 0


# -- the fused sparse encoder -----------------------------------------------------------------------
@pytest.mark.parametrize("batch", [False, True])
def test_sparse_encode_matches_the_dense_reference_forward_and_backward(batch: bool) -> None:
    torch.manual_seed(0)
    n, d, h, k = 16, 6, 24, 3
    x = torch.randn(n, d)
    params = [torch.randn(d), torch.randn(d, h), torch.randn(h) * 0.1]
    dense_p = [p.clone().requires_grad_(True) for p in params]
    sparse_p = [p.clone().requires_grad_(True) for p in params]
    w_dec = ops.normalize_rows_(torch.randn(h, d))
    b_dec, w_enc, b_enc = dense_p
    pre = torch.relu((x - b_dec) @ w_enc + b_enc)
    codes = ops.batch_topk_dense(pre, k) if batch else ops.topk_mask_dense(pre, k)
    ref = codes @ w_dec
    idx, vals, offsets = ops.sparse_encode(x, *sparse_p, k=k, batch=batch)
    got = ops.sparse_decode(idx, vals, w_dec, offsets)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    target = torch.randn(n, d)
    ((ref - target) ** 2).sum().backward()
    ((got - target) ** 2).sum().backward()
    for a, b in zip(dense_p, sparse_p, strict=True):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)


# -- the decoder constraint -------------------------------------------------------------------------
def test_parallel_gradient_removal_and_renormalisation() -> None:
    w = torch.nn.Parameter(ops.normalize_rows_(torch.randn(6, 4)))
    w.grad = torch.randn(6, 4)
    ops.remove_parallel_grads_(w)
    assert w.grad is not None
    torch.testing.assert_close((w.grad * w).sum(1), torch.zeros(6), atol=1e-6, rtol=0)
    with torch.no_grad():
        w.mul_(3.0)
    ops.normalize_rows_(w.data)
    torch.testing.assert_close(w.norm(dim=1), torch.ones(6))


# -- the contract, for every registered architecture ------------------------------------------------
@pytest.mark.parametrize("arch", TRAINABLE)
def test_contract_shapes_and_gradients(arch: str) -> None:
    sae = make_sae(sae_cfg(arch, 8, 32)).train()
    if sae.unit_decoder:
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    x = torch.randn(64, 8)
    sae.init_from_data_(x)
    out = sae.training_forward(x, torch.zeros(32, dtype=torch.bool))
    assert out.x_hat.shape == (64, 8) and out.fired.shape == (32,) and out.fired.dtype == torch.bool
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    total = out.recon_loss + out.sparsity_loss + out.aux_loss
    if arch != "matryoshka":  # its loss averages the prefixes; recon_loss is the full FVU
        torch.testing.assert_close(out.loss.detach(), total)
    out.loss.backward()
    for name, p in sae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    sae.eval()
    codes = sae.encode(x)
    assert codes.shape == (64, 32) and (codes >= 0).all()
    torch.testing.assert_close(sae.decode(codes), codes @ sae.W_dec + sae.b_dec)
    torch.testing.assert_close(sae(x).x_hat, sae.decode(codes))


@pytest.mark.parametrize("arch", ARCHS)
def test_inference_codes_never_depend_on_the_batch(arch: str) -> None:
    sae = _trained_like(arch)
    x = torch.randn(10, 8)
    torch.testing.assert_close(
        sae.encode(x), torch.cat([sae.encode(x[i : i + 1]) for i in range(10)])
    )
    assert (sae.encode(x) != 0).any()


@pytest.mark.parametrize("arch", ARCHS)
def test_folding_the_input_scale_gives_the_same_model_on_raw_inputs(arch: str) -> None:
    sae = _trained_like(arch)
    x = torch.randn(20, 8) * 7.0
    scale = 0.37
    ref = sae(x * scale)
    import copy

    folded = copy.deepcopy(sae)
    folded.fold_input_scale_(scale)
    out = folded(x)
    torch.testing.assert_close(out.codes, ref.codes / scale, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.x_hat, ref.x_hat / scale, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_canonical_form_has_unit_decoder_rows_and_the_same_function(arch: str) -> None:
    sae = _trained_like(arch)
    x = torch.randn(20, 8)
    ref = sae(x).x_hat
    sae.canonicalize_()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    torch.testing.assert_close(sae(x).x_hat, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip_gives_identical_codes(arch: str, tmp_path: Path) -> None:
    sae = _trained_like(arch)
    save_sae(sae, tmp_path / "sae", {"note": "test"})
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is type(sae) and loaded.cfg == sae.cfg
    x = torch.randn(12, 8)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=0, atol=0)
    import json

    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    from vista.saes.interop import saelens_export

    assert cfg["d_in"] == 8 and cfg["d_sae"] == 32
    assert cfg["architecture"] == saelens_export().get(arch, arch)  # the SAELens name
    assert cfg["vista"]["config"]["architecture"] == arch
    assert cfg["vista"]["metadata"] == {"note": "test"}


@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in TRAINABLE])
def test_inference_only_encoders_refuse_to_train(arch: str) -> None:
    from vista.errors import VistaError

    sae = _trained_like(arch)
    with pytest.raises(VistaError, match="inference-time encoder"):
        sae.training_forward(torch.randn(4, 8))


def test_loading_a_directory_without_an_sae_is_explained(tmp_path: Path) -> None:
    from vista.errors import VistaError

    with pytest.raises(VistaError, match="not an SAE directory"):
        load_sae(tmp_path)


def test_unknown_architecture_lists_the_registry() -> None:
    from vista.errors import VistaError

    with pytest.raises(VistaError, match="choose one of"):
        make_sae({"architecture": "nope", "d_model": 2, "d_sae": 2})


def test_registry_rejects_duplicates() -> None:
    from vista.saes.registry import register_sae

    with pytest.raises(ValueError, match="twice"):
        register_sae("topk")(SAE)


@pytest.mark.parametrize(
    ("n", "h", "k"), [(64, 512, 8), (3, 4096, 32), (1, 64 * 256, 640), (5, 30, 4)]
)
def test_grouped_topk_equals_torch_topk(n: int, h: int, k: int) -> None:
    x = torch.randn(n, h, generator=torch.Generator().manual_seed(h))
    vals, idx = ops.grouped_topk(x, k)
    ref_vals, ref_idx = x.topk(k, dim=1)
    torch.testing.assert_close(vals.sort(1, descending=True).values, ref_vals)
    assert torch.equal(idx.sort(1).values, ref_idx.sort(1).values)
    torch.testing.assert_close(x.gather(1, idx), vals)


def _batch_topk_reference(x: torch.Tensor, n_keep: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy: the n_keep largest entries of x read flat, ties to the lowest positions (a stable
    descending sort), returned in position order."""
    flat = x.reshape(-1).numpy()
    order = np.argsort(-flat, kind="stable")[:n_keep]
    pos = np.sort(order)
    return flat[pos], pos


@pytest.mark.parametrize(
    ("case", "n_keep"),
    [
        ("gaussian", 131),  # the usual case: the sampled threshold holds at the first try
        ("sample_biased", 100),  # the sampled entries are the largest: the estimate fails, retry
        ("ties", 50),  # many equal values at the cut: the lowest positions win
        ("gaussian", 0),
        ("gaussian", 64 * 40),  # everything
        ("odd_width", 77),  # width not a multiple of the group: ungrouped
    ],
)
def test_batch_topk_flat_equals_a_stable_sort(case: str, n_keep: int) -> None:
    g = torch.Generator().manual_seed(3)
    if case == "odd_width":
        x = torch.randn(64, 39, generator=g)
    else:
        x = torch.randn(64, 40, generator=g)
    if case == "sample_biased":
        x.view(-1)[::61] += 10.0  # 42 entries, all in the sample: tau lands above the cut
    if case == "ties":
        x = torch.randint(0, 4, (64, 40), generator=g).float()
    vals, pos = ops.batch_topk_flat(x, n_keep)
    ref_vals, ref_pos = _batch_topk_reference(x, n_keep)
    np.testing.assert_array_equal(pos.numpy(), ref_pos)
    np.testing.assert_array_equal(vals.numpy(), ref_vals)


@pytest.mark.parametrize("arch", ARCHS)
def test_encode_sparse_gives_the_non_zero_entries_of_encode(arch: str) -> None:
    sae = _trained_like(arch)
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(3))
    dense = sae.encode(x)
    rows, cols, vals = sae.encode_sparse(x)
    assert bool((rows[1:] >= rows[:-1]).all())  # row-major order
    rebuilt = torch.zeros_like(dense)
    rebuilt[rows, cols] = vals
    torch.testing.assert_close(rebuilt, dense)
    assert len(vals) == int((dense != 0).sum()) and bool((vals != 0).all())
