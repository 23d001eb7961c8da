"""Interop with the peer libraries themselves, each run in its own environment (bench/.envs/*).

vista's exports must load in SAELens with identical encodings, and SAEs written by SAELens,
dictionary_learning and EleutherAI sparsify must load in vista with identical encodings. The
peer environments are built by ``bench/peers/setup.sh`` (``make test`` builds them while the
suite runs, see tests/peers.py, and sets VISTA_REQUIRE_PEERS=1, so a missing environment fails
instead of skipping).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.peers import peer_python
from tests.saes.test_saes import _trained_like
from vista.saes.interop import saelens_export
from vista.saes.io import load_sae, save_sae


def run_peer(env: str, script: str, tmp_path: Path) -> dict[str, np.ndarray]:
    """Run ``script`` in the peer's environment; it saves its arrays to the npz at argv[1]."""
    out = tmp_path / f"{env}_out.npz"
    proc = subprocess.run(
        [peer_python(env), "-c", textwrap.dedent(script), str(out), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


X = torch.randn(24, 8, generator=torch.Generator().manual_seed(7))


# -- vista -> SAELens ---------------------------------------------------------------------------------
def test_vista_exports_load_in_saelens_with_identical_encodings(tmp_path: Path) -> None:
    archs = sorted(saelens_export())
    ours = {}
    for arch in archs:
        sae = _trained_like(arch)
        save_sae(sae, tmp_path / arch)
        ours[arch] = sae.encode(X).detach().numpy()
    np.save(tmp_path / "x.npy", X.numpy())
    got = run_peer(
        "saelens",
        f"""
        import sys, numpy as np, torch
        from pathlib import Path
        from sae_lens import SAE
        tmp = Path(sys.argv[2]); x = torch.from_numpy(np.load(tmp / "x.npy"))
        out = {{}}
        for arch in {archs!r}:
            sae = SAE.load_from_disk(tmp / arch)
            out[arch] = sae.encode(x).detach().numpy()
            out[arch + "_type"] = np.array(type(sae).__name__)
        np.savez(sys.argv[1], **out)
        """,
        tmp_path,
    )
    for arch in archs:
        np.testing.assert_allclose(got[arch], ours[arch], rtol=1e-5, atol=1e-5, err_msg=arch)
        assert (ours[arch] != 0).any()
    assert str(got["batchtopk_type"]) == "JumpReLUSAE"


# -- SAELens -> vista ---------------------------------------------------------------------------------
def test_saelens_saes_load_in_vista_with_identical_encodings(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X.numpy())
    got = run_peer(
        "saelens",
        """
        import sys, numpy as np, torch
        from pathlib import Path
        import sae_lens as sl
        tmp = Path(sys.argv[2]); x = torch.from_numpy(np.load(tmp / "x.npy"))
        torch.manual_seed(0)
        saes = {
            "standard": sl.StandardSAE(sl.StandardSAEConfig(d_in=8, d_sae=32)),
            "topk": sl.TopKSAE(sl.TopKSAEConfig(d_in=8, d_sae=32, k=4)),
            "topk_rescale": sl.TopKSAE(
                sl.TopKSAEConfig(d_in=8, d_sae=32, k=4, rescale_acts_by_decoder_norm=True)
            ),
            "jumprelu": sl.JumpReLUSAE(sl.JumpReLUSAEConfig(d_in=8, d_sae=32)),
            "jumprelu_negative": sl.JumpReLUSAE(sl.JumpReLUSAEConfig(d_in=8, d_sae=32)),
            "gated": sl.GatedSAE(sl.GatedSAEConfig(d_in=8, d_sae=32)),
            "matching_pursuit": sl.MatchingPursuitSAE(sl.MatchingPursuitSAEConfig(
                d_in=8, d_sae=32, max_iterations=4, residual_threshold=0.0,
                stop_on_duplicate_support=False)),
            "no_b_dec_in": sl.StandardSAE(
                sl.StandardSAEConfig(d_in=8, d_sae=32, apply_b_dec_to_input=False)
            ),
        }
        out = {}
        for name, sae in saes.items():
            with torch.no_grad():
                for pname, p in sae.named_parameters():
                    p.copy_(torch.randn_like(p) * 0.5)  # non-unit decoder rows too
                if name == "jumprelu":
                    sae.threshold.copy_(torch.rand(32) * 0.5)
                if name == "jumprelu_negative":  # edge case: thresholds below zero
                    sae.threshold.copy_(torch.rand(32) - 0.5)
                if name == "matching_pursuit":  # pursuit atoms are unit rows
                    sae.W_dec.copy_(sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True))
            sae.save_model(tmp / name)
            out[name] = sae.encode(x).detach().numpy()
            out[name + "_recon"] = sae.decode(sae.encode(x)).detach().numpy()
        np.savez(sys.argv[1], **out)
        """,
        tmp_path,
    )
    names = ("standard", "topk", "topk_rescale", "jumprelu", "jumprelu_negative", "gated",
             "matching_pursuit", "no_b_dec_in")  # fmt: skip
    for name in names:
        sae = load_sae(tmp_path / name)
        codes = sae.encode(X)
        recon = sae.decode(codes).detach().numpy()
        np.testing.assert_allclose(recon, got[name + "_recon"], rtol=1e-4, atol=1e-4, err_msg=name)
        if name != "topk_rescale":  # there vista's codes are the canonical (unit-decoder) ones
            np.testing.assert_allclose(
                codes.detach().numpy(), got[name], rtol=1e-4, atol=1e-5, err_msg=name
            )
        else:
            assert np.array_equal(codes.detach().numpy() != 0, got[name] != 0)


# -- dictionary_learning -> vista ----------------------------------------------------------------------
def test_dictionary_learning_saes_load_in_vista_with_identical_encodings(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X.numpy())
    got = run_peer(
        "dictlearn",
        """
        import sys, json, numpy as np, torch
        from pathlib import Path
        from dictionary_learning.dictionary import AutoEncoder, JumpReluAutoEncoder, GatedAutoEncoder
        from dictionary_learning.trainers.top_k import AutoEncoderTopK
        from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
        from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE
        tmp = Path(sys.argv[2]); x = torch.from_numpy(np.load(tmp / "x.npy"))
        torch.manual_seed(0)
        saes = {
            "AutoEncoder": AutoEncoder(8, 32),
            "AutoEncoderTopK": AutoEncoderTopK(8, 32, 4),
            "BatchTopKSAE": BatchTopKSAE(8, 32, 4),
            "JumpReluAutoEncoder": JumpReluAutoEncoder(8, 32),
            "GatedAutoEncoder": GatedAutoEncoder(8, 32),
            "MatryoshkaBatchTopKSAE": MatryoshkaBatchTopKSAE(8, 32, 4, [8, 8, 16]),
            # edge cases: thresholds below zero, and inference thresholds not yet set (-1)
            "JumpReluAutoEncoder_negative": JumpReluAutoEncoder(8, 32),
            "BatchTopKSAE_unset": BatchTopKSAE(8, 32, 4),
            "MatryoshkaBatchTopKSAE_unset": MatryoshkaBatchTopKSAE(8, 32, 4, [8, 8, 16]),
        }
        out = {}
        for name, ae in saes.items():
            with torch.no_grad():
                for p in ae.parameters():
                    p.copy_(torch.randn_like(p) * 0.5)
                if hasattr(ae, "threshold"):
                    if name.endswith("_unset"):
                        ae.threshold.fill_(-1.0)
                    elif ae.threshold.ndim == 0:
                        ae.threshold.fill_(0.3)
                    elif name.endswith("_negative"):
                        ae.threshold.copy_(torch.rand(32) - 0.5)
                    else:
                        ae.threshold.copy_(torch.rand(32) * 0.5)
            d = tmp / name
            d.mkdir()
            torch.save(ae.state_dict(), d / "ae.pt")
            cls = name.split("_")[0]
            (d / "config.json").write_text(json.dumps({"trainer": {"dict_class": cls, "k": 4}}))
            out[name] = ae.encode(x).detach().numpy()
            out[name + "_recon"] = ae(x).detach().numpy()
        np.savez(sys.argv[1], **out)
        """,
        tmp_path,
    )
    for name in (
        "AutoEncoder",
        "AutoEncoderTopK",
        "BatchTopKSAE",
        "JumpReluAutoEncoder",
        "GatedAutoEncoder",
        "MatryoshkaBatchTopKSAE",
        "JumpReluAutoEncoder_negative",
        "BatchTopKSAE_unset",
        "MatryoshkaBatchTopKSAE_unset",
    ):
        sae = load_sae(tmp_path / name)
        codes = sae.encode(X)
        np.testing.assert_allclose(
            codes.detach().numpy(), got[name], rtol=1e-4, atol=1e-5, err_msg=name
        )
        np.testing.assert_allclose(
            sae.decode(codes).detach().numpy(), got[name + "_recon"], rtol=1e-4, atol=1e-4
        )
        assert (got[name] != 0).any(), name


# -- sparsify -> vista ----------------------------------------------------------------------------------
def test_sparsify_saes_load_in_vista_with_identical_encodings(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X.numpy())
    got = run_peer(
        "sparsify",
        """
        import sys, numpy as np, torch
        from pathlib import Path
        from sparsify import SparseCoder, SparseCoderConfig
        tmp = Path(sys.argv[2]); x = torch.from_numpy(np.load(tmp / "x.npy"))
        torch.manual_seed(0)
        sae = SparseCoder(8, SparseCoderConfig(num_latents=32, k=4))
        with torch.no_grad():
            for p in sae.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        sae.save_to_disk(tmp / "sparsify_sae")
        enc = sae.encode(x)
        codes = torch.zeros(x.shape[0], 32).scatter_(1, enc.top_indices, enc.top_acts)
        out = sae(x)
        np.savez(sys.argv[1], codes=codes.detach().numpy(), recon=out.sae_out.detach().numpy())
        """,
        tmp_path,
    )
    sae = load_sae(tmp_path / "sparsify_sae")
    codes = sae.encode(X)
    np.testing.assert_allclose(codes.detach().numpy(), got["codes"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        sae.decode(codes).detach().numpy(), got["recon"], rtol=1e-4, atol=1e-4
    )


# -- original VISTA checkpoints (hand-computed from docs/originals.md §1.1-1.6) -------------------------------------
@pytest.mark.parametrize("variant", ["vanilla", "topk", "batchtopk", "jumprelu"])
@pytest.mark.parametrize("layout", ["lightning", "legacy"])
def test_original_vista_checkpoints_load_with_the_original_encoding(
    variant: str, layout: str, tmp_path: Path
) -> None:
    g = torch.Generator().manual_seed(1)
    d, h, k = 8, 32, 4
    state = {
        "W_enc": torch.randn(d, h, generator=g),
        "b_enc": torch.randn(h, generator=g) * 0.1,
        "W_dec": torch.nn.functional.normalize(torch.randn(h, d, generator=g), dim=1),
        "b_dec": torch.randn(d, generator=g) * 0.1,
        "num_batches_not_active": torch.zeros(h),
    }
    if variant == "jumprelu":
        state["log_threshold"] = torch.randn(h, generator=g) * 0.3
    hp = {"variant": variant, "input_size": d, "hidden_size": h, "top_k": k, "learning_rate": 1e-4}
    if layout == "lightning":
        ckpt = {"hyper_parameters": hp, "state_dict": {f"model.{n}": v for n, v in state.items()}}
    else:
        ckpt = {"config": hp, "model_state_dict": state}
    path = tmp_path / "sae.ckpt"
    torch.save(ckpt, path)
    # The original's encoding, written out from docs/originals.md §1.1-1.6.
    p = torch.relu((X - state["b_dec"]) @ state["W_enc"] + state["b_enc"])
    if variant == "vanilla":
        ref = p
    elif variant in ("topk", "batchtopk"):  # batchtopk: no inference threshold -> per token
        vals, idx = p.topk(k, dim=1)
        ref = torch.zeros_like(p).scatter_(1, idx, vals)
    else:
        theta = state["log_threshold"].exp()
        ref = p * (p > theta)
    sae = load_sae(path)
    torch.testing.assert_close(sae.encode(X), ref, rtol=1e-5, atol=1e-6)


def test_an_unknown_checkpoint_is_explained(tmp_path: Path) -> None:
    from vista.errors import VistaError

    path = tmp_path / "x.ckpt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(VistaError, match="neither a Lightning checkpoint"):
        load_sae(path)
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "transcoder", "d_in": 2}))
    (tmp_path / "sae_weights.safetensors").write_bytes(b"")
    with pytest.raises(VistaError):
        load_sae(tmp_path)


def test_each_architecture_declares_its_saelens_name_in_its_own_file() -> None:
    assert saelens_export() == {
        "vanilla": "standard",
        "topk": "topk",
        "jumprelu": "jumprelu",
        "gated": "gated",
        "batchtopk": "jumprelu",
        "matryoshka": "jumprelu",
        "mp": "matching_pursuit",
    }
