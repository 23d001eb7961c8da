"""Reading SAEs written by other tools, and the SAELens names vista exports under.

Every reader returns a vista SAE with the same encodings as the source (tested against the source
libraries in tests/saes/test_interop.py):
- vista and SAELens directories (``cfg.json`` + ``sae_weights.safetensors``): standard (ReLU),
  topk (incl. ``rescale_acts_by_decoder_norm``), jumprelu, gated;
- dictionary_learning (``ae.pt`` + ``config.json``): AutoEncoder, AutoEncoderTopK, BatchTopKSAE,
  MatryoshkaBatchTopKSAE, JumpReluAutoEncoder, GatedAutoEncoder;
- EleutherAI sparsify (``cfg.json`` + ``sae.safetensors``): TopK sparse coders;
- original VISTA checkpoints (docs/originals.md §3.4): Lightning ``.ckpt`` (``hyper_parameters`` + ``model.``
  state dict) and legacy ``{config, model_state_dict}`` files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vista.errors import VistaError


def saelens_export() -> dict[str, str]:
    """vista architecture -> the SAELens architecture whose inference encoding is identical, for
    every architecture that declares one (``SAE.saelens_architecture``, set in its own file)."""
    from vista.saes.registry import SAES

    return {
        name: cls.saelens_architecture for name, cls in SAES.items() if cls.saelens_architecture
    }


SAELENS_KEYS = {
    "standard": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "topk": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "jumprelu": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
    "matching_pursuit": {"W_dec", "b_dec"},
    "gated": {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"},
}


def _fail(path: Path, why: str) -> VistaError:
    return VistaError(f"Cannot read the SAE at {str(path)!r}: {why}")


def fold_b_dec_into_b_enc(state: dict[str, Tensor], bias_key: str = "b_enc") -> None:
    """Turn ``x W_enc + b`` (no ``b_dec`` subtracted) into ``(x - b_dec) W_enc + b'``."""
    state[bias_key] = state[bias_key] + state["b_dec"] @ state["W_enc"]


def canonical_topk(state: dict[str, Tensor]) -> None:
    """SAELens ``rescale_acts_by_decoder_norm``: selecting on ``pre * ||W_dec||`` and decoding with
    ``W_dec / ||W_dec||`` is a TopK SAE with those norms folded into the encoder."""
    norms = state["W_dec"].norm(dim=1).clamp_min(1e-12)
    state["W_enc"] = state["W_enc"] * norms[None, :]
    state["b_enc"] = state["b_enc"] * norms
    state["W_dec"] = state["W_dec"] / norms[:, None]


# -- SAELens ----------------------------------------------------------------------------------------
def from_saelens(path: Path, doc: dict[str, Any], state: dict[str, Tensor]) -> tuple[dict, dict]:
    arch = doc.get("architecture", "standard")
    if doc.get("normalize_activations", "none") not in ("none", None):
        raise _fail(
            path,
            f"it normalises its inputs ({doc['normalize_activations']!r}); fold the normalisation "
            "into the weights with SAELens first.",
        )
    if doc.get("reshape_activations", "none") not in ("none", None):
        raise _fail(path, "it reshapes its inputs (hook_z); vista reads flat activations only.")
    d_in, d_sae = int(doc["d_in"]), int(doc["d_sae"])
    state = {k: v.float() for k, v in state.items()}
    if not doc.get("apply_b_dec_to_input", True):
        fold_b_dec_into_b_enc(state, "b_gate" if arch == "gated" else "b_enc")
    cfg: dict[str, Any] = {"d_model": d_in, "d_sae": d_sae}
    if arch == "standard":
        cfg["architecture"] = "vanilla"
    elif arch == "topk":
        cfg.update(architecture="topk", k=int(doc["k"]))
        if doc.get("rescale_acts_by_decoder_norm", False):
            canonical_topk(state)
    elif arch == "jumprelu":
        cfg["architecture"] = "jumprelu"
        state.setdefault("preact_scale", torch.tensor(1.0))
    elif arch == "gated":
        cfg["architecture"] = "gated"
    elif arch == "matching_pursuit":
        if float(doc.get("residual_threshold") or 0.0) > 0 or doc.get(
            "stop_on_duplicate_support", True
        ):
            raise _fail(
                path,
                "its matching pursuit stops early (residual_threshold > 0 or "
                "stop_on_duplicate_support), which vista's fixed-step pursuit does not; save it "
                "with residual_threshold=0 and stop_on_duplicate_support=false.",
            )
        cfg.update(architecture="mp", k=int(doc.get("max_iterations") or d_in))
        state = {k: state[k] for k in ("W_dec", "b_dec")}
    else:
        raise _fail(
            path,
            f"SAELens architecture {arch!r} is not one vista reads (standard, topk, jumprelu, "
            "gated, matching_pursuit).",
        )
    return cfg, state


# -- dictionary_learning ---------------------------------------------------------------------------
def from_dictionary_learning(path: Path) -> tuple[dict, dict]:
    """``ae.pt`` (a state dict) + ``config.json`` (``{"trainer": {"dict_class": ...}}``)."""
    ae = path / "ae.pt" if path.is_dir() else path
    conf_file = ae.parent / "config.json"
    if not conf_file.is_file():
        raise _fail(path, f"dictionary_learning SAEs need the config.json beside {ae.name}.")
    trainer = json.loads(conf_file.read_text()).get("trainer", {})
    cls = trainer.get("dict_class", "")
    raw = torch.load(ae, map_location="cpu", weights_only=True)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in raw.items()}
    cfg, state = _dl_state(path, cls, sd, trainer)
    state = {k: v.contiguous() for k, v in state.items()}
    cfg["d_model"], cfg["d_sae"] = state["W_dec"].shape[1], state["W_dec"].shape[0]
    return cfg, state


def _dl_state(
    path: Path, cls: str, sd: dict[str, torch.Tensor], trainer: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """dictionary_learning's state dict of class ``cls`` -> vista's config and state."""
    cfg: dict[str, Any]
    if cls in ("AutoEncoder",):
        state = {
            "W_enc": sd["encoder.weight"].t(),
            "b_enc": sd["encoder.bias"],
            "W_dec": sd["decoder.weight"].t(),
            "b_dec": sd["bias"],
        }
        cfg = {"architecture": "vanilla"}
    elif cls in ("AutoEncoderTopK", "BatchTopKSAE"):
        state = {
            "W_enc": sd["encoder.weight"].t(),
            "b_enc": sd["encoder.bias"],
            "W_dec": sd["decoder.weight"].t(),
            "b_dec": sd["b_dec"],
        }
        cfg = {"architecture": "topk" if cls == "AutoEncoderTopK" else "batchtopk"}
        cfg["k"] = int(sd["k"]) if "k" in sd else int(trainer["k"])
        if cls == "BatchTopKSAE":
            state["threshold"] = _dl_threshold(sd, state)
    elif cls == "MatryoshkaBatchTopKSAE":
        state = {k: sd[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
        state["threshold"] = _dl_threshold(sd, state)
        cfg = {
            "architecture": "matryoshka",
            "k": int(sd["k"]),
            "group_sizes": [int(g) for g in sd["group_sizes"].tolist()],
        }
    elif cls == "JumpReluAutoEncoder":
        state = {k: sd[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
        # dictionary_learning's JumpReLU does not subtract b_dec before encoding.
        fold_b_dec_into_b_enc(state)
        state["preact_scale"] = torch.tensor(1.0)
        cfg = {"architecture": "jumprelu"}
    elif cls == "GatedAutoEncoder":
        state = {
            "W_enc": sd["encoder.weight"].t(),
            "b_gate": sd["gate_bias"],
            "r_mag": sd["r_mag"],
            "b_mag": sd["mag_bias"],
            "W_dec": sd["decoder.weight"].t(),
            "b_dec": sd["decoder_bias"],
        }
        cfg = {"architecture": "gated"}
    else:
        raise _fail(
            path,
            f"dictionary_learning class {cls!r} is not one vista reads (AutoEncoder, AutoEncoderTopK, "
            "BatchTopKSAE, MatryoshkaBatchTopKSAE, JumpReluAutoEncoder, GatedAutoEncoder).",
        )
    return cfg, state


# -- EleutherAI sparsify -----------------------------------------------------------------------------
def from_sparsify(path: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    doc = json.loads((path / "cfg.json").read_text())
    if doc.get("activation", "topk") != "topk":
        raise _fail(path, f"sparsify activation {doc['activation']!r} is not TopK.")
    if doc.get("transcode") or doc.get("skip_connection"):
        raise _fail(path, "it is a transcoder or has a skip connection; vista reads autoencoders.")
    sd = load_file(str(path / "sae.safetensors"))
    state = {
        "W_enc": sd["encoder.weight"].float().t().contiguous(),
        "b_enc": sd["encoder.bias"].float(),
        "W_dec": sd["W_dec"].float(),
        "b_dec": sd["b_dec"].float(),
    }
    cfg = {
        "architecture": "topk",
        "k": int(doc["k"]),
        "d_model": state["W_dec"].shape[1],
        "d_sae": state["W_dec"].shape[0],
    }
    return cfg, state


def _dl_threshold(sd: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> torch.Tensor:
    """dictionary_learning's BatchTopK/Matryoshka inference threshold, one per latent. Unset (-1,
    before training has estimated it) it keeps every positive pre-activation, ``relu(pre) *
    (relu(pre) > -1)``: a threshold of 0 encodes the same (vista would fall back to per-token
    TopK at -1)."""
    t = max(float(sd["threshold"]), 0.0)
    return torch.full((state["b_enc"].shape[0],), t)


# -- original VISTA checkpoints ----------------------------------------------------------------------
def from_vista_checkpoint(path: Path) -> tuple[dict, dict]:
    """Lightning ``.ckpt`` (``hyper_parameters`` + ``state_dict`` with a ``model.`` prefix) or a
    legacy ``{config, model_state_dict}`` file of the original VISTA code (docs/originals.md §1.1-1.6, 3.4)."""
    from vista.safeload import load_torch

    try:
        ck = load_torch(path)
    except VistaError:
        raise
    except Exception as e:
        raise _fail(path, f"it is not a readable PyTorch checkpoint ({e}).") from None
    if not isinstance(ck, dict):
        raise _fail(
            path, "it is neither a Lightning checkpoint nor a {config, model_state_dict} file."
        )
    if "state_dict" in ck:
        hp = dict(ck.get("hyper_parameters", {}))
        sd = {k.removeprefix("model."): v for k, v in ck["state_dict"].items()}
    elif "model_state_dict" in ck:
        hp = dict(ck.get("config", {}))
        sd = dict(ck["model_state_dict"])
    else:
        raise _fail(
            path, "it is neither a Lightning checkpoint nor a {config, model_state_dict} file."
        )
    variant = str(hp.get("variant", hp.get("sae_variant", "")))
    if variant not in ("vanilla", "topk", "batchtopk", "jumprelu"):
        raise _fail(path, f"unknown VISTA SAE variant {variant!r} in its hyper-parameters.")
    state = {k: sd[k].float() for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    cfg: dict[str, Any] = {
        "architecture": variant,
        "d_model": state["W_enc"].shape[0],
        "d_sae": state["W_enc"].shape[1],
    }
    if variant in ("topk", "batchtopk"):
        cfg["k"] = int(hp.get("top_k", 32))
    if variant == "batchtopk":
        # The original has no inference threshold (docs/originals.md D3): vista's BatchTopK without one
        # encodes with per-token TopK, which does not depend on the batch.
        state["threshold"] = torch.full((cfg["d_sae"],), -1.0)
    if variant == "jumprelu":
        state["threshold"] = sd["log_threshold"].float().exp()
        state["preact_scale"] = torch.tensor(1.0)
    return cfg, state


def _has_trainer_config(conf: Path) -> bool:
    try:
        return "trainer" in json.loads(conf.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def detect_and_read(path: Path) -> tuple[dict, dict] | None:
    """Foreign formats by their files; ``None`` when ``path`` is a vista/SAELens directory."""
    if path.is_file():
        # dictionary_learning keeps {"trainer": {...}} in the config.json beside its weights.
        if path.name == "ae.pt" or _has_trainer_config(path.parent / "config.json"):
            return from_dictionary_learning(path)
        return from_vista_checkpoint(path)
    if (path / "ae.pt").is_file():
        return from_dictionary_learning(path)
    if (path / "sae.safetensors").is_file() and (path / "cfg.json").is_file():
        return from_sparsify(path)
    return None
