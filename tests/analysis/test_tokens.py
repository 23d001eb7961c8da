"""``tokens``: FVU, L0 and norms per token type, against numpy on the SAE's own forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.analysis.planted import token_store
from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.registry import ANALYSES
from vista.analysis.runner import run_analyses
from vista.analysis.tokens import token_types
from vista.errors import VistaError
from vista.metrics.positions import NORM_EDGES, norm_quantile, share_above
from vista.saes import make_sae

T, D, N = 8, 6, 60  # CLS, 2 registers, 5 patches (token_store)


def _sae() -> object:
    torch.manual_seed(0)
    return make_sae({"architecture": "topk", "d_model": D, "d_sae": 16, "k": 3}).eval()


def _by_hand(sae: object, x: np.ndarray, where: list[int]) -> dict[str, float]:
    flat = torch.from_numpy(x.reshape(-1, D))
    with torch.no_grad():
        codes = sae.encode(flat)  # type: ignore[attr-defined]
        x_hat = sae.decode(codes).numpy().reshape(N, T, D)  # type: ignore[attr-defined]
    l0 = (codes.numpy() != 0).sum(axis=1).reshape(N, T)
    xs, err = x[:, where].astype(np.float64), (x - x_hat)[:, where].astype(np.float64)
    flat_type = xs.reshape(-1, D)
    total = ((flat_type - flat_type.mean(axis=0)) ** 2).sum()
    norms = np.linalg.norm(flat_type, axis=1)
    return {
        "fvu": float((err**2).sum() / total),
        "l0": float(l0[:, where].mean()),
        "norm_mean": float(norms.mean()),
        "norm_median": float(np.median(norms)),
    }


def test_each_token_type_is_scored_against_its_own_mean(tmp_path: Path) -> None:
    store, x = token_store(tmp_path / "vit.h5", D)
    sae = _sae()
    ctx = Context(sae, store, AnalysisSettings(n_boot=10))
    r = run_analyses(ctx, ["tokens"], {"tokens": ANALYSES["tokens"].config()}, tmp_path / "o")
    r = r.results["tokens"]
    assert r.metadata["types"] == {"cls": [0, 1], "registers": [1, 3], "patches": [3, 8]}
    for name, where in (("cls", [0]), ("registers", [1, 2]), ("patches", [3, 4, 5, 6, 7])):
        want = _by_hand(sae, x, where)
        assert r.scalars[f"{name}/fvu"].value == pytest.approx(want["fvu"], rel=1e-5), name
        assert r.scalars[f"{name}/l0"].value == pytest.approx(want["l0"]), name
        assert r.scalars[f"{name}/norm_mean"].value == pytest.approx(want["norm_mean"], rel=1e-6)
        # the median is read from 1/16-octave bins: within half a bin (2.2%)
        med = r.scalars[f"{name}/norm_median"].value
        assert abs(np.log2(med / want["norm_median"])) <= 1 / 32 + 1e-9, name
        assert r.scalars[f"{name}/tokens"].value == N * len(where)
    # 12 of the 300 patch tokens are 20x the median norm of 1
    assert r.scalars["patches/high_norm_share"].value == pytest.approx(12 / (N * 5))
    assert r.metadata["high_norm_threshold"] == pytest.approx(4.0, rel=0.03)
    # position 5: 12 of 60 images at 20, the rest at 1
    assert r.arrays["position_norm"][5] == pytest.approx((12 * 20 + 48) / 60, rel=1e-6)
    assert r.arrays["position_norm"][4] == pytest.approx(1.0, rel=1e-6)
    assert r.headline == ["cls/fvu", "registers/fvu", "patches/fvu"]


def test_one_token_per_image_is_skipped_with_its_reason(tmp_path: Path) -> None:
    from tests.analysis.planted import identity_sae, planted_store

    ctx = Context(identity_sae(16), planted_store(tmp_path / "p.h5"), AnalysisSettings(n_boot=10))
    cfgs = {"tokens": ANALYSES["tokens"].config()}
    out = run_analyses(ctx, ["tokens"], cfgs, tmp_path / "o", explicit=False)
    assert "one token per image" in out.skipped["tokens"]
    with pytest.raises(VistaError, match="'tokens' could not run: the store holds one token"):
        run_analyses(ctx, ["tokens"], cfgs, tmp_path / "o2")


@pytest.mark.parametrize(
    ("attrs", "types"),
    [
        ({"token_selection": "all", "prefix_tokens": 5, "register_tokens": 4},
         {"cls": [0], "registers": [1, 2, 3, 4], "patches": [5, 6]}),
        ({"token_selection": "all", "prefix_tokens": 1, "register_tokens": 0},
         {"cls": [0], "patches": [1, 2, 3, 4, 5, 6]}),
        ({"token_selection": "no_registers", "prefix_tokens": 5, "register_tokens": 4},
         {"cls": [0], "patches": [1, 2, 3, 4, 5, 6]}),
        ({"token_selection": "patches", "prefix_tokens": 1}, {"patches": list(range(7))}),
        ({"token_selection": "registers", "prefix_tokens": 5, "register_tokens": 4},
         {"registers": list(range(7))}),
        ({}, {"patches": list(range(7))}),  # the original VISTA layout: no attributes
    ],
)  # fmt: skip
def test_token_types_by_hand(attrs: dict, types: dict) -> None:
    assert token_types(7, attrs) == types


def test_norm_quantiles_and_shares_from_the_histogram() -> None:
    norms = np.array([0.5, 1.0, 1.0, 2.0, 40.0])
    hist = np.bincount(
        np.searchsorted(NORM_EDGES, norms, side="right"), minlength=len(NORM_EDGES) + 1
    )
    assert abs(np.log2(norm_quantile(hist, 0.5))) <= 1 / 32
    assert share_above(hist, 4.0) == pytest.approx(1 / 5)
    assert share_above(hist, 0.1) == pytest.approx(1.0)
    assert np.isnan(norm_quantile(np.zeros_like(hist), 0.5))


def test_the_report_draws_the_patch_grid_when_the_patches_are_square(tmp_path: Path) -> None:
    from vista.analysis.result import read_results
    from vista.reports.plots import report_figures

    for patches, drawn in ((4, True), (5, False)):  # a 2 x 2 grid; 5 patches form none
        store, _ = token_store(tmp_path / f"vit{patches}.h5", D, patches)
        ctx = Context(_sae(), store, AnalysisSettings(n_boot=10))
        out = tmp_path / f"o{patches}"
        run_analyses(ctx, ["tokens"], {"tokens": ANALYSES["tokens"].config()}, out)
        figs = report_figures(read_results(out), out / "plots")
        made = [f for f in figs["overview"] if f["src"] == "plots/tokens.png"]
        assert bool(made) == drawn
        if drawn:
            assert (out / "plots/tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
