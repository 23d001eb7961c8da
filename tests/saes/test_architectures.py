"""Each architecture's math on hand-computed values, and independent references (numpy, scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vista.saes import make_sae, ops
from vista.saes.jumprelu import jumprelu, step
from vista.saes.mp import matching_pursuit
from vista.saes.pursuit import pursuit_encoder

W_DEC = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])


def _set(sae: torch.nn.Module, **tensors: torch.Tensor) -> None:
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(sae, name).copy_(value)


# -- vanilla --------------------------------------------------------------------------------------
def test_vanilla_loss_by_hand() -> None:
    sae = make_sae({"architecture": "vanilla", "d_model": 2, "d_sae": 3, "l1_coeff": 0.5})
    w_dec = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.3, 0.4]])  # row norms 2, 1, 0.5
    _set(sae, W_enc=torch.eye(2, 3), b_enc=torch.zeros(3), W_dec=w_dec, b_dec=torch.zeros(2))
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    # codes = relu(x @ I_{2x3}) = [[1, 2, 0], [3, 0, 0]]; x_hat = [[2, 2], [6, 0]]
    out = sae.training_forward(x)
    torch.testing.assert_close(out.x_hat, torch.tensor([[2.0, 2.0], [6.0, 0.0]]))
    total_var = 2 * (1.0**2 + 1.5**2)  # mean [2, 0.5]
    fvu = (1.0 + 0.0 + 9.0 + 1.0) / total_var
    l1 = ((1 * 2 + 2 * 1) + (3 * 2)) / 2 / np.sqrt(total_var / 2)  # norm-weighted, per token
    assert float(out.recon_loss) == pytest.approx(fvu, rel=1e-6)
    assert float(out.sparsity_loss) == pytest.approx(0.5 * l1, rel=1e-6)
    assert float(out.loss.detach()) == pytest.approx(fvu + 0.5 * l1, rel=1e-6)
    half = sae.training_forward(x, sparsity_scale=0.5)
    assert float(half.sparsity_loss) == pytest.approx(0.25 * l1, rel=1e-6)


def test_vanilla_decoder_is_free_while_training() -> None:
    sae = make_sae({"architecture": "vanilla", "d_model": 4, "d_sae": 8, "dec_init_norm": 0.1})
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((8,), 0.1))
    sae.after_optimizer_step()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((8,), 0.1))


# -- JumpReLU -------------------------------------------------------------------------------------
def test_jumprelu_straight_through_gradients_by_hand() -> None:
    z = torch.tensor([[0.95, 1.2, 0.5], [1.04, 0.3, 2.0]], requires_grad=True)
    theta = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    eps = torch.tensor(0.2)
    out = jumprelu(z, theta, eps)
    torch.testing.assert_close(out.detach(), torch.tensor([[0.0, 1.2, 0.0], [1.04, 0.0, 2.0]]))
    out.sum().backward()
    assert z.grad is not None and theta.grad is not None
    torch.testing.assert_close(z.grad, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]))
    # In the window |z - theta| < eps/2 = 0.1: z=0.95 and z=1.04 (latent 0): -(theta/eps) each.
    torch.testing.assert_close(theta.grad, torch.tensor([-2 * 1.0 / 0.2, 0.0, 0.0]))
    theta.grad = None
    z.grad = None
    l0 = step(z, theta, eps)
    torch.testing.assert_close(l0.detach(), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]))
    l0.sum().backward()
    assert z.grad is None  # the L0 term never moves the pre-activations
    torch.testing.assert_close(theta.grad, torch.tensor([-2 / 0.2, 0.0, 0.0]))


@pytest.mark.parametrize("chunk_entries", [2**24, 7 * 32])
def test_jumprelu_init_l0_sets_each_threshold_at_its_latents_quantile(
    chunk_entries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each latent fires on ``init_l0 / d_sae`` of the initialisation tokens: its threshold is
    its (m+1)-th largest pre-activation (numpy sort as reference), whole or 7 tokens at a time."""
    from vista.saes import jumprelu as jr

    monkeypatch.setattr(jr, "INIT_CHUNK_ENTRIES", chunk_entries)
    torch.manual_seed(0)
    n, d, h = 3000, 8, 32
    x = torch.randn(n, d) * 3.0 + 1.0
    sae = make_sae({"architecture": "jumprelu", "d_model": d, "d_sae": h, "init_l0": 4.0})
    sae.init_from_data_(x)
    m = round(4.0 / h * n)  # 375 tokens per latent
    z = sae.pre_acts(x).detach().numpy()
    ref = np.sort(z, axis=0)[n - m - 1]  # (m+1)-th largest per latent
    np.testing.assert_allclose(sae.threshold.detach().numpy(), np.maximum(ref, 0), rtol=1e-5)
    fires = (z > sae.threshold.detach().numpy()).sum(0)
    # a GEMM over 7 tokens rounds differently from one over 3000: a token can sit on the edge
    assert np.abs(fires - m).max() <= (0 if chunk_entries == 2**24 else 1), fires
    rms = np.sqrt((z.astype(np.float64) ** 2).mean())
    assert float(sae.preact_scale) == pytest.approx(rms, rel=1e-5)
    common = make_sae({"architecture": "jumprelu", "d_model": d, "d_sae": h, "init_l0": None})
    common.init_from_data_(x)
    torch.testing.assert_close(common.threshold.detach(), 0.5 * common.preact_scale.expand(h))


@pytest.mark.parametrize("init_l0", [None, 16.0])
@pytest.mark.parametrize("input_scale", [1.0, 100.0])
def test_jumprelu_threshold_learns_on_normalised_and_raw_inputs(
    input_scale: float, init_l0: float | None
) -> None:
    torch.manual_seed(0)
    d, h = 16, 64
    dirs = ops.normalize_rows_(torch.randn(h, d))
    sae = make_sae(
        {"architecture": "jumprelu", "d_model": d, "d_sae": h, "l0_coeff": 0.05, "init_l0": init_l0}
    )

    def batch() -> torch.Tensor:
        codes = (torch.rand(512, h) < 0.05) * torch.rand(512, h)
        return (codes @ dirs) * input_scale

    sae.init_from_data_(batch())
    theta0 = sae.threshold.detach().clone()
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2 * input_scale)
    l0s = []
    for _ in range(150):
        out = sae.training_forward(batch())
        opt.zero_grad()
        out.loss.backward()
        sae.before_optimizer_step()
        opt.step()
        sae.after_optimizer_step()
        l0s.append(float(out.l0))
    moved = (sae.threshold.detach() - theta0).abs() / theta0
    assert float(moved.median()) > 0.2, "thresholds barely moved"
    assert np.mean(l0s[-20:]) < 0.7 * np.mean(l0s[:5])
    assert sae.threshold.dtype == torch.float32 and (sae.threshold >= 0).all()


# -- Gated ----------------------------------------------------------------------------------------
def test_gated_codes_and_losses_by_hand() -> None:
    sae = make_sae({"architecture": "gated", "d_model": 2, "d_sae": 3, "l1_coeff": 0.0})
    _set(
        sae,
        W_enc=torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]]),
        b_gate=torch.tensor([0.0, -2.5, 0.0]),
        r_mag=torch.tensor([0.0, 0.0, np.log(2.0)]),
        b_mag=torch.tensor([0.5, 0.0, 0.0]),
        W_dec=W_DEC,
        b_dec=torch.zeros(2),
    )
    x = torch.tensor([[1.0, 2.0]])
    # xW = [1, 2, 1]; gate = [1, -0.5, 1] -> latents 0 and 2 open;
    # magnitudes = relu([1 + 0.5, 2, 2 * 1]) = [1.5, 2, 2] -> codes [1.5, 0, 2]
    torch.testing.assert_close(sae.encode(x), torch.tensor([[1.5, 0.0, 2.0]]))
    x2 = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    out = sae.training_forward(x2)
    total_var = 2 * (0.5**2 + 1.0**2)
    via_gate = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]) @ W_DEC  # relu(gate) decoded
    assert float(out.aux_loss) == pytest.approx(float(((x2 - via_gate) ** 2).sum()) / total_var)


# -- Matryoshka -----------------------------------------------------------------------------------
def test_matryoshka_averages_the_prefix_losses() -> None:
    sae = make_sae(
        {"architecture": "matryoshka", "d_model": 2, "d_sae": 3, "k": 2, "group_sizes": [1, 2]}
    )
    _set(
        sae,
        W_enc=torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]]),
        b_enc=torch.tensor([0.0, 0.0, 0.5]),
        W_dec=W_DEC,
        b_dec=torch.zeros(2),
    )
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    # pre = [[1, 2, 1.5], [3, 0, -2.5]]; batch top 4 = 3, 2, 1.5, 1 -> codes [[1,2,1.5],[3,0,0]]
    out = sae.training_forward(x)
    codes = torch.tensor([[1.0, 2.0, 1.5], [3.0, 0.0, 0.0]])
    total_var = float(((x - x.mean(0)) ** 2).sum())
    prefix1 = codes[:, :1] @ W_DEC[:1]
    full = codes @ W_DEC
    fvu1 = float(((x - prefix1) ** 2).sum()) / total_var
    fvu_full = float(((x - full) ** 2).sum()) / total_var
    torch.testing.assert_close(out.x_hat, full)
    assert float(out.recon_loss) == pytest.approx(fvu_full, rel=1e-6)
    assert float(out.loss.detach()) == pytest.approx((fvu1 + fvu_full) / 2, rel=1e-6)


@pytest.mark.parametrize(("d_sae", "groups"), [(128, [64, 64]), (7, [3, 4]), (1, [1])])
def test_matryoshka_default_groups_are_two_halves(d_sae: int, groups: list[int]) -> None:
    sae = make_sae({"architecture": "matryoshka", "d_model": 4, "d_sae": d_sae, "k": 1})
    assert sae.prefix_ends.tolist() == np.cumsum(groups).tolist()


def test_matryoshka_rejects_groups_that_do_not_cover_the_latents() -> None:
    from vista.errors import VistaError

    with pytest.raises(VistaError, match="sum to d_sae"):
        make_sae(
            {"architecture": "matryoshka", "d_model": 2, "d_sae": 8, "group_sizes": [2, 2], "k": 2}
        )


# -- Matching pursuit -----------------------------------------------------------------------------
def test_matching_pursuit_by_hand() -> None:
    x = torch.tensor([[1.0, 2.0]])
    # step 1: corr = [1, 2, 2.2] -> atom 2, c = 2.2, r = [-0.32, 0.24]
    # step 2: corr = [-0.32, 0.24, 0]: non-negative picks atom 1 (0.24); signed picks atom 0 (-0.32)
    codes, r = matching_pursuit(x, W_DEC, 2)
    torch.testing.assert_close(codes, torch.tensor([[0.0, 0.24, 2.2]]))
    torch.testing.assert_close(r, torch.tensor([[-0.32, 0.0]]))
    signed, _ = matching_pursuit(x, W_DEC, 2, signed=True)
    torch.testing.assert_close(signed, torch.tensor([[-0.32, 0.0, 2.2]]))


def test_trainable_mp_sae_encodes_with_its_decoder_and_learns() -> None:
    torch.manual_seed(0)
    sae = make_sae({"architecture": "mp", "d_model": 2, "d_sae": 3, "k": 2})
    _set(sae, W_dec=W_DEC, b_dec=torch.zeros(2))
    torch.testing.assert_close(
        sae.encode(torch.tensor([[1.0, 2.0]])), torch.tensor([[0, 0.24, 2.2]])
    )
    assert {n for n, _ in sae.named_parameters()} == {"W_dec", "b_dec"}


# -- inference-time pursuit (IHTP, MPSAE) -----------------------------------------------------------
def _dictionary(d: int = 6, h: int = 12) -> torch.nn.Module:
    sae = make_sae({"architecture": "topk", "d_model": d, "d_sae": h, "k": 3, "seed": 3})
    _set(sae, b_dec=torch.linspace(-1, 1, d))
    return sae


def test_ihtp_per_token_matches_numpy_least_squares() -> None:
    sae = _dictionary()
    ihtp = pursuit_encoder(sae, "ihtp", k=3)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    codes = ihtp.encode(x)
    w, b = sae.W_dec.detach().numpy().astype(np.float64), sae.b_dec.detach().numpy()
    for i in range(5):
        xc = x[i].numpy() - b
        support = np.sort(np.argsort(-np.abs(w @ xc))[:3])
        ref, *_ = np.linalg.lstsq(w[support].T, xc, rcond=None)
        np.testing.assert_allclose(codes[i, support].numpy(), ref, rtol=1e-4, atol=1e-5)
        assert int((codes[i] != 0).sum()) == 3


@pytest.mark.parametrize("solver", ["min_norm", "ridge"])
def test_ihtp_instances_share_a_support_larger_than_d_model(solver: str) -> None:
    sae = _dictionary()
    ihtp = pursuit_encoder(sae, "ihtp", k=3, solver=solver, ridge=0.1)
    x = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(2))  # 2 images, 4 tokens
    codes = ihtp.encode_instances(x)
    w, b = sae.W_dec.detach().numpy().astype(np.float64), sae.b_dec.detach().numpy()
    for i in range(2):
        xc = x[i].numpy() - b
        support = np.unique(np.argsort(-np.abs(xc @ w.T), axis=1)[:, :3])
        assert len(support) > 6  # underdetermined: the case the original code got wrong (D40)
        a = w[support]
        if solver == "min_norm":
            ref = xc @ np.linalg.pinv(a)
        else:
            gram = a @ a.T
            lam = 0.1 * np.diag(gram).mean()
            ref = np.linalg.solve(gram + lam * np.eye(len(support)), a @ xc.T).T
        np.testing.assert_allclose(codes[i][:, support].numpy(), ref, rtol=1e-4, atol=1e-5)
        off = np.setdiff1d(np.arange(12), support)
        assert (codes[i][:, off] == 0).all()
    if solver == "min_norm":  # exact fit when the support spans the space
        torch.testing.assert_close(ihtp.decode(codes), x, rtol=1e-4, atol=1e-4)


def test_mpsae_is_signed_matching_pursuit_on_the_dictionary() -> None:
    sae = make_sae({"architecture": "topk", "d_model": 2, "d_sae": 3, "k": 1})
    _set(sae, W_dec=W_DEC * 2.0, b_dec=torch.zeros(2))  # non-unit rows: codes rescale
    mpsae = pursuit_encoder(sae, "mpsae", k=2)
    codes = mpsae.encode(torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(codes, torch.tensor([[-0.16, 0.0, 1.1]]))
    assert mpsae.signed_codes


def test_per_instance_l0_is_the_union_over_an_images_tokens() -> None:
    from vista.metrics.sparsity import SparsityAccumulator

    codes = torch.zeros(4, 5)  # 2 images x 2 tokens
    codes[0, [0, 1]] = 1
    codes[1, [1, 2]] = -1
    codes[2, 3] = 2
    acc = SparsityAccumulator(5)
    acc.update(codes, tokens_per_image=2)
    res = acc.result()
    assert res["l0_mean"] == pytest.approx((2 + 0.5) / 2)
    assert res["l0_per_instance_mean"] == pytest.approx((3 + 1) / 2)


# -- initialisation -------------------------------------------------------------------------------
def test_geometric_median_matches_scipy() -> None:
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(0, 1, (200, 3)), rng.normal(50, 1, (20, 3))])
    ref = minimize(lambda m: np.linalg.norm(pts - m, axis=1).sum(), pts.mean(0), tol=1e-10).x
    got = ops.geometric_median(torch.from_numpy(pts)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert np.linalg.norm(got) < np.linalg.norm(pts.mean(0))  # robust to the outlier cluster


@pytest.mark.parametrize("dense_above", [1.0, 0.0], ids=["sparse", "dense"])
def test_jumprelu_training_paths_match_the_straight_through_reference(
    dense_above: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both training paths (sparse codes, dense codes) against autograd through ``jumprelu``/``step``."""
    monkeypatch.setattr(ops, "DENSE_JUMPRELU_ABOVE", dense_above)
    torch.manual_seed(0)
    n, d, h = 32, 6, 24
    x = torch.randn(n, d)
    base = [
        torch.randn(d) * 0.1,
        torch.randn(d, h),
        torch.randn(h) * 0.1,
        torch.rand(h) * 0.8 + 0.2,
    ]
    eps = torch.tensor(0.4)
    w_dec = ops.normalize_rows_(torch.randn(h, d))
    dense = [t.clone().requires_grad_(True) for t in base]
    sparse = [t.clone().requires_grad_(True) for t in base]
    target = torch.randn(n, d)
    b_dec, w_enc, b_enc, theta = dense
    z = (x - b_dec) @ w_enc + b_enc
    ref_hat = jumprelu(z, theta, eps) @ w_dec
    ref_l0 = step(z, theta, eps).sum(1).mean()
    (((ref_hat - target) ** 2).sum() + 0.3 * ref_l0).backward()
    codes, vals, offsets, l0 = ops.jumprelu_train(x, *sparse[:3], sparse[3], eps)
    if dense_above == 0.0:
        assert vals is None and codes.shape == (n, h)
        got_hat = codes @ w_dec
    else:
        assert vals is not None
        got_hat = ops.sparse_decode(codes, vals, w_dec, offsets)
    (((got_hat - target) ** 2).sum() + 0.3 * l0).backward()
    torch.testing.assert_close(got_hat, ref_hat.detach(), rtol=1e-5, atol=1e-5)
    assert float(l0) == pytest.approx(float(ref_l0))
    for a, b in zip(dense, sparse, strict=True):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)
