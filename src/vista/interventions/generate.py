"""``generate``: what a vision-language model says about an image, with the SAE spliced into its
vision tower and a label's features edited (docs/originals.md §4.6-4.7, D17, D18).

The store's model is reloaded with its language model (a Hugging Face ``ImageTextToText`` model:
PaliGemma 2, Qwen2-VL, LLaVA, ...); a stratified sample of the target label's held-out images is
captioned (``task=caption``) or asked one question per label and the control questions
(``task=vqa``), greedily, once clean and once per mode with the edit applied to every token the
SAE was trained on:

- ``passthrough`` (encode-decode only) and ``noise`` (Gaussian noise at the SAE's measured
  reconstruction-error scale): how much the SAE alone changes the text;
- ``suppression``, ``amplification``, ``attenuation``: the target's top-k SDFs per class
  (round-robin over classes, importance order) scaled by 0, ``amplify_alpha``,
  ``attenuate_alpha``; ``suppression_kept`` puts the SAE's reconstruction error back, so only the
  features' removal acts; ``random`` / ``random_kept``: as many random alive features;
- ``leace`` (the ``concept-erasure`` eraser fitted on the pooled training part) and ``sp_topk``
  (S&P Top-K's projection), per token.

Captions: keyword DCR of every label (the seeds' lists for FairFace, class names otherwise),
``dcr_delta = DCR_modified - DCR_original`` as a paired per-image contrast with a bootstrap
interval and a sign-flip permutation p-value, overall and per class of the target; BERTScore when
the package and a local model are given. VQA: accuracy per question before and after, and the
causal effect ``mean change on the label questions - mean change on the control questions`` per
image. Each mode's texts are also written as ``causal_<task>_<target>_<mode>.json`` and its metrics
as ``eval_causal_<task>_<target>_<mode>.json`` in the original schemas.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vista.analysis.declared import Outputs
from vista.analysis.registry import register_analysis
from vista.analysis.result import Result, Skip
from vista.analysis.sdf import SDFConfig
from vista.interventions import hooks, ops, text
from vista.interventions.erasure import sp_coef
from vista.interventions.generation import default_caption_prompt, generate
from vista.interventions.model import Model, rebuild
from vista.interventions.targets import (
    class_features,
    random_features,
    ranked_features,
    round_robin,
)
from vista.interventions.text_effects import bertscore, caption_effects, vqa_effects

if TYPE_CHECKING:
    from vista.analysis.context import Context

log = logging.getLogger(__name__)

MODES = (
    "passthrough",
    "noise",
    "suppression",
    "suppression_kept",
    "random",
    "random_kept",
    "amplification",
    "attenuation",
    "leace",
    "sp_topk",
)


@dataclass
class GenerateConfig:
    task: str = "caption"
    """caption (one caption per image) or vqa (one question per label, and the control ones)."""
    target: str = ""
    """The label whose features are edited and whose classes stratify the sample ('' = the first
    usable label)."""
    modes: list[str] = field(
        default_factory=lambda: [
            "passthrough",
            "noise",
            "suppression",
            "suppression_kept",
            "random_kept",
            "leace",
        ]
    )
    """Any of: passthrough, noise, suppression, suppression_kept, random, random_kept,
    amplification, attenuation, leace, sp_topk."""
    k: int = 10
    """Top SDFs per class of the target (their round-robin union is edited)."""
    amplify_alpha: float = 3.0
    attenuate_alpha: float = 0.5
    sp_k: int = 64
    """S&P Top-K: latents of top inter-class variance behind the projected axis."""
    sp_alpha: float = 1.0
    noise_std: float = 0.0
    """Noise per token and dimension (0 = the SAE's measured reconstruction-error scale)."""
    prompt: str = ""
    """Caption prompt ('' = ``caption en`` for PaliGemma, ``Describe this image.`` otherwise)."""
    questions: dict[str, str] = field(default_factory=dict)
    """VQA: label -> question (unset labels: the seeds' for FairFace, a generic one otherwise)."""
    control_questions: list[str] = field(default_factory=lambda: list(text.CONTROL_QUESTIONS))
    max_images: int = 200
    """Held-out images, sampled stratified by the target's classes (0 = all)."""
    batch_size: int = 4
    max_new_tokens: int = 64
    dtype: str = "float32"
    """The VLM's weights and compute: float32, bfloat16 or float16 (GPU)."""
    encoder_path: str = ""
    """Where the store's model is now, if it moved ('' = the path the store records)."""
    dataset_root: str = ""
    bertscore_model: str = ""
    """A local model directory for BERTScore (needs the bert-score package); '' = not computed."""
    sdf: SDFConfig = field(default_factory=SDFConfig)


def _needs(cfg: GenerateConfig) -> str:
    bad = [m for m in cfg.modes if m not in MODES]
    if bad:
        return f"unknown generate.modes {bad} (choose from {', '.join(MODES)})"
    if cfg.task not in ("caption", "vqa"):
        return f"generate.task={cfg.task!r} is not caption or vqa"
    if cfg.k <= 0 or cfg.max_new_tokens <= 0 or cfg.batch_size <= 0:
        return "generate.k, generate.max_new_tokens and generate.batch_size must be positive"
    if cfg.dtype not in ("float32", "bfloat16", "float16"):
        return f"generate.dtype={cfg.dtype!r} is not float32, bfloat16 or float16"
    return ""


def stratified_sample(
    y: np.ndarray, rows: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """About ``n`` of ``rows``, each class in proportion to its share (at least one of each)."""
    if not n or n >= len(rows):
        return rows
    out = []
    for c in np.unique(y[rows]):
        members = rows[y[rows] == c]
        take = max(1, round(n * len(members) / len(rows)))
        out.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(out))[:n] if out else rows


def _edits(
    ctx: Context, target: str, cfg: GenerateConfig
) -> tuple[dict[str, hooks.Edit], dict[str, Any]]:
    """The per-token edit of each mode, and what it used (features, alpha, sigma)."""
    sae, enc = ctx.sae.eval(), ctx.encoded
    per_class = class_features(ctx, target, cfg.sdf)
    union = round_robin([per_class[c][: cfg.k] for c in sorted(per_class)])
    if not len(union):
        union, _ = ranked_features(ctx, target, "variance", cfg.sdf)
        union = union[: cfg.k * max(1, len(per_class))]
    rand = random_features(ctx, union, len(union), ctx.rng("generate", target), like=union)
    feats, rfeats = torch.as_tensor(union), torch.as_tensor(rand)
    d = int(ctx.sae.d_model)
    sigma = cfg.noise_std or ops.error_scale(
        enc.image_sq_error, enc.n_images * enc.tokens_per_image, d
    )
    meta: dict[str, Any] = {
        "features": union.tolist(),
        "random_features": rand.tolist(),
        "noise_std": sigma,
    }
    out: dict[str, hooks.Edit] = {}
    for mode in cfg.modes:
        if mode == "passthrough":
            out[mode] = hooks.passthrough(sae)
        elif mode == "noise":
            out[mode] = hooks.noise(sigma, ctx.settings.seed)
        elif mode in ("suppression", "suppression_kept"):
            out[mode] = hooks.suppress(sae, feats, keep_error=mode.endswith("_kept"))
        elif mode in ("random", "random_kept"):
            out[mode] = hooks.suppress(sae, rfeats, keep_error=mode.endswith("_kept"))
        elif mode in ("amplification", "attenuation"):
            alpha = cfg.amplify_alpha if mode == "amplification" else cfg.attenuate_alpha
            out[mode] = hooks.scale(sae, feats, alpha, keep_error=False)
            meta[f"{mode}_alpha"] = alpha
        elif mode == "leace":
            tr, _ = ctx.train_test(target)
            n_cls = len(ctx.class_names[target])
            eraser = ops.leace(enc.pooled_raw[tr].astype(np.float64), ctx.labels[target][tr], n_cls)
            out[mode] = hooks.erase(eraser)
        elif mode == "sp_topk":
            tr, _ = ctx.train_test(target)
            ranked, _ = ranked_features(ctx, target, "variance", cfg.sdf)
            top = np.sort(ranked[: cfg.sp_k])
            w_enc = sae.W_enc.detach().cpu().double().numpy()
            axis = ops.sp_axis(w_enc, top, sp_coef(enc.codes[tr], ctx.labels[target][tr], top))
            v = torch.as_tensor(ops.projection(axis, cfg.sp_alpha), dtype=torch.float32)
            out[mode] = hooks.linear(v)
            meta["sp_features"] = top.tolist()
    return out, meta


def _prompts(ctx: Context, m: Model, cfg: GenerateConfig) -> list[tuple[str, str, str]]:
    """``(key, kind, prompt)``: kind is caption, a label name (its question) or control."""
    if cfg.task == "caption":
        return [("caption", "caption", cfg.prompt or default_caption_prompt(m.processor))]
    out = []
    for label in ctx.require_labels():
        q = text.question(label, ctx.class_names[label], dict(cfg.questions))
        out.append((q, label, q))
    out += [(q, "control", q) for q in cfg.control_questions]
    return out


def _run_all(
    ctx: Context,
    m: Model,
    rows: np.ndarray,
    prompts: list[tuple[str, str, str]],
    edits: dict[str, hooks.Edit],
    cfg: GenerateConfig,
) -> dict[str, dict[str, list[str]]]:
    """condition ('original' or a mode) -> prompt key -> texts, one per row."""
    a = ctx.store_attrs
    images = ctx.original_indices[rows] if ctx.original_indices is not None else rows
    texts: dict[str, dict[str, list[str]]] = {
        c: {k: [] for k, _, _ in prompts} for c in ["original", *edits]
    }
    pre, regs = int(a.get("prefix_tokens", 0)), int(a.get("register_tokens", 0))
    started = last = time.monotonic()
    for s in range(0, len(images), cfg.batch_size):
        batch = list(m.dataset.load(images[s : s + cfg.batch_size]))
        for key, _, prompt in prompts:
            for cond in texts:
                edit = None if cond == "original" else edits[cond]
                texts[cond][key] += generate(
                    m, batch, prompt, edit, cfg.max_new_tokens, int(ctx.sae.d_model), pre, regs
                )
        if time.monotonic() - last >= 30:
            last = time.monotonic()
            done = min(s + cfg.batch_size, len(images))
            log.info("generate: %d/%d images, %.0f s", done, len(images), last - started)
    return texts


OUT = Outputs("generate")
OUT.scalar("{mode}/{label}/dcr_original", "none", "keyword detection rate of the original texts")
OUT.scalar("{mode}/{label}/dcr_modified", "none", "the same for the edited texts")
OUT.scalar("{mode}/{label}/dcr_delta", "none", "modified minus original")
OUT.scalar("{mode}/causal_effect", "none", "the edit's effect on the answers")
SAMPLES = OUT.table("samples", "original and edited texts of the first images")
DCR = OUT.table("dcr", "per mode and attribute: detection rates")
OUT.table("dcr_per_class", "per mode, attribute and class: detection rates")
VQA = OUT.table("vqa", "per mode and question: answer changes")
TARGET = OUT.meta("target", "the label whose features were edited")


@register_analysis(
    "generate",
    GenerateConfig,
    "A VLM's captions or answers, clean and with the SAE and a label's features edited in its vision tower.",
    needs_labels=1,
    needs=_needs,
    order=200,
    outputs=OUT,
)
def run(ctx: Context, cfg: GenerateConfig) -> Result:
    s = ctx.settings
    m = rebuild(
        ctx, cfg.encoder_path, cfg.dataset_root, s.device, head="generator", dtype=cfg.dtype
    )
    target = ctx.pick_labels([cfg.target])[0] if cfg.target else ctx.require_labels()[0]
    rows = stratified_sample(
        ctx.labels[target], ctx.train_test(target)[1], cfg.max_images, ctx.rng("generate", "sample")
    )
    if not len(rows):
        raise Skip(f"the label {target!r} has no held-out images")
    edits, meta = _edits(ctx, target, cfg)
    prompts = _prompts(ctx, m, cfg)
    texts = _run_all(ctx, m, rows, prompts, edits, cfg)
    y = {lab: ctx.labels[lab][rows] for lab in ctx.require_labels()}
    r = Result("generate")
    vlm = str(getattr(m.full.config, "model_type", ""))
    r.metadata.update(target=target, task=cfg.task, vlm=vlm, layer=m.layer, tokens=m.tokens)
    r.metadata.update(n_images=len(rows), n_target_features=len(meta["features"]), **meta)
    for mode in edits:
        ev = _evaluate(r, ctx, cfg, target, mode, y, prompts, texts)
        _files(r, ctx, cfg, target, mode, rows, y, prompts, texts, meta, vlm, ev)
    if not cfg.bertscore_model and cfg.task == "caption":
        r.skipped["bertscore"] = (
            "not computed: set generate.bertscore_model to a local model "
            "directory (needs the bert-score package)"
        )
    r.tables["samples"] = [
        {
            "index": int(i),
            "prompt": key,
            "original": texts["original"][key][j],
            **{mode: texts[mode][key][j] for mode in edits},
        }
        for j, i in enumerate(rows[:20])
        for key, _, _ in prompts[:1]
    ]
    r.headline = [
        h
        for mode in edits
        for h in (f"{mode}/{target}/dcr_delta", f"{mode}/causal_effect")
        if h in r.scalars
    ]
    return r


def _evaluate(
    r: Result,
    ctx: Context,
    cfg: GenerateConfig,
    target: str,
    mode: str,
    y: dict[str, np.ndarray],
    prompts: list[tuple[str, str, str]],
    texts: dict[str, dict[str, list[str]]],
) -> dict[str, Any]:
    """The edit ``mode``'s texts scored against the originals (captions or answers)."""
    if cfg.task != "caption":
        return vqa_effects(ctx, y, prompts, texts["original"], texts[mode], mode, r)
    o, t = texts["original"]["caption"], texts[mode]["caption"]
    ev = caption_effects(ctx, target, y, o, t, mode, r)
    if cfg.bertscore_model:
        try:
            ev["bertscore"] = bertscore(t, o, cfg.bertscore_model)
        except Exception as e:  # any failure of an optional metric
            r.skipped["bertscore"] = str(e)
    return ev


def _files(
    r: Result,
    ctx: Context,
    cfg: GenerateConfig,
    target: str,
    mode: str,
    rows: np.ndarray,
    y: dict[str, np.ndarray],
    prompts: list[tuple[str, str, str]],
    texts: dict[str, dict[str, list[str]]],
    meta: dict[str, Any],
    vlm: str,
    ev: dict[str, Any],
) -> None:
    """``causal_<task>_<target>_<mode>.json`` and its ``eval_`` document (the original schemas)."""
    stem = f"causal_{cfg.task}_{target}_{mode}"
    alpha = meta.get(f"{mode}_alpha", cfg.sp_alpha if mode == "sp_topk" else 0.0)
    config = {
        "task": cfg.task,
        "attribute": target,
        "intervention_mode": mode,
        "alpha": alpha,
        "n_samples": len(rows),
        "n_target_features": len(meta["features"]),
        "vlm": vlm,
    }
    samples = []
    for j, i in enumerate(rows):
        labels = {lab: int(v[j]) for lab, v in y.items()}
        readable = {lab: ctx.class_names[lab][c] for lab, c in labels.items()}
        base = {"index": int(i), "labels": labels, "labels_readable": readable, "task": cfg.task}
        if cfg.task == "caption":
            samples.append(
                {
                    **base,
                    "original_text": texts["original"]["caption"][j],
                    "modified_text": texts[mode]["caption"][j],
                }
            )
        else:
            qs = {
                key: {
                    "type": "control" if kind == "control" else "demographic",
                    "original": texts["original"][key][j],
                    "modified": texts[mode][key][j],
                }
                for key, kind, _ in prompts
            }
            samples.append({**base, "questions": qs})
    md = {"analysis": "generate", **ctx.metadata()}
    r.files[f"{stem}.json"] = {"_metadata": md, "config": config, "samples": samples}
    r.files[f"eval_{stem}.json"] = {
        "_metadata": md,
        "source_file": f"{stem}.json",
        "config": config,
        "evaluation": ev,
    }
