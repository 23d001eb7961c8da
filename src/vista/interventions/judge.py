"""LLM-as-judge over caption files (docs/originals.md §4.8): does a caption mention an attribute, and which of
two captions describes it more explicitly.

- ``binary``: per caption and attribute, the judge answers Yes or No to "does this caption
  explicitly mention the person's <attribute>?". LLM-DCR is the fraction of Yes; its change from
  the original captions to the modified ones is a paired per-image contrast (bootstrap interval,
  sign-flip permutation p-value), next to the keyword DCR of the same captions.
- ``pairwise``: the original and modified caption shown as A and B, the order drawn per sample
  by ``random.Random(seed)`` (and recorded), the answer A, B or tie mapped back to original,
  modified or tie.

Answers are parsed after dropping everything up to a ``</think>``: the first word decides, else a
single kind of answer anywhere in the text; anything else is counted as unparsed and reported. The
judge is any local causal LM directory (``save_pretrained``); its chat template is used when it
has one (thinking disabled), with left padding and greedy decoding.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vista.analysis.result import Result
from vista.errors import VistaError
from vista.interventions import text
from vista.interventions.scoring import paired_effect

log = logging.getLogger(__name__)

DESCRIPTIONS = {"race": "race or ethnicity", "gender": "gender", "age": "age"}


@dataclass
class JudgeConfig:
    model_path: str = ""
    """A local causal LM directory (save_pretrained output), e.g. Qwen3-8B."""
    files: list[str] = field(default_factory=list)
    """Caption files (``causal_caption_<attr>_<mode>.json``, written by ``vista generate``)."""
    mode: str = "binary"
    """binary (Yes/No per caption and attribute) or pairwise (original vs modified)."""
    attributes: list[str] = field(default_factory=list)
    """Attributes asked about (empty = every label of the files' samples)."""
    max_samples: int = 0
    """Samples judged per file (0 = all)."""
    batch_size: int = 32
    max_new_tokens: int = 10
    device: str = "cpu"
    dtype: str = "float32"
    """The judge's weights: float32, bfloat16 or float16 (GPU)."""
    seed: int = 42
    """Seed of the pairwise order and of the intervals."""
    n_boot: int = 1000
    n_perm: int = 1000
    confidence: float = 0.95


def strip_thinking(answer: str) -> str:
    return answer.rsplit("</think>", 1)[-1] if "</think>" in answer else answer


def _first_word(answer: str) -> str:
    m = re.search(r"[A-Za-z]+", strip_thinking(answer))
    return m.group(0) if m else ""


def parse_yes_no(answer: str) -> str | None:
    """``"yes"``, ``"no"`` or ``None`` (unparsed)."""
    first = _first_word(answer).lower()
    if first in ("yes", "no"):
        return first
    found = {w.lower() for w in re.findall(r"\b(yes|no)\b", strip_thinking(answer), re.I)}
    return found.pop() if len(found) == 1 else None


def parse_ab(answer: str) -> str | None:
    """``"A"``, ``"B"``, ``"tie"`` or ``None``. A and B are matched in capitals only (``a`` is an
    article)."""
    body = strip_thinking(answer)
    first = _first_word(body)
    if first in ("A", "B"):
        return first
    if first.lower() in ("tie", "equal", "neither", "both"):
        return "tie"
    found = set(re.findall(r"\b(A|B)\b", body))
    if re.search(r"\btie\b", body, re.I):
        found.add("tie")
    return found.pop() if len(found) == 1 else None


def binary_prompt(caption: str, attribute: str) -> str:
    what = DESCRIPTIONS.get(attribute, attribute.replace("_", " "))
    return (
        f'Here is a caption of an image:\n"{caption}"\n'
        f"Does this caption explicitly mention or describe the {what} of the subject? "
        "Answer with only Yes or No."
    )


def pairwise_prompt(a: str, b: str, attribute: str) -> str:
    what = DESCRIPTIONS.get(attribute, attribute.replace("_", " "))
    return (
        f'Two captions of the same image.\nCaption A: "{a}"\nCaption B: "{b}"\n'
        f"Which caption describes the {what} of the subject more explicitly? "
        "Answer with only A, B or tie."
    )


class Judge:
    """A local causal LM answering prompts greedily, in batches."""

    def __init__(self, cfg: JudgeConfig) -> None:
        try:
            import transformers as tf
        except ImportError:
            raise VistaError(
                "The judge needs transformers (pip install 'vista-sae[hf]')."
            ) from None
        if not cfg.model_path or not Path(cfg.model_path).is_dir():
            raise VistaError(
                f"model_path={cfg.model_path!r} is not a directory; give a local causal LM "
                "written by save_pretrained (e.g. a downloaded Qwen3-8B)."
            )
        try:
            self.tok = tf.AutoTokenizer.from_pretrained(cfg.model_path)
            self.model = tf.AutoModelForCausalLM.from_pretrained(
                cfg.model_path, dtype=getattr(torch, cfg.dtype)
            )
        except (OSError, ValueError, KeyError) as e:
            raise VistaError(
                f"{cfg.model_path!r} does not load as a causal LM ({str(e).splitlines()[0]})."
            ) from None
        self.model.to(cfg.device).eval()  # type: ignore[arg-type]  # transformers' stub
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.cfg = cfg

    def _text(self, prompt: str) -> str:
        if getattr(self.tok, "chat_template", None):
            messages = [{"role": "user", "content": prompt}]
            return str(
                self.tok.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
                )
            )
        return prompt

    @torch.no_grad()
    def ask(self, prompts: list[str]) -> list[str]:
        out: list[str] = []
        started = last = time.monotonic()
        for s in range(0, len(prompts), self.cfg.batch_size):
            batch = [self._text(p) for p in prompts[s : s + self.cfg.batch_size]]
            enc = self.tok(batch, return_tensors="pt", padding=True).to(self.cfg.device)
            gen = self.model.generate(
                **enc,
                max_new_tokens=self.cfg.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.tok.pad_token_id,
            )
            new = gen[:, enc["input_ids"].shape[1] :]
            out += [a.strip() for a in self.tok.batch_decode(new, skip_special_tokens=True)]
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                log.info("judge: %d/%d prompts, %.0f s", len(out), len(prompts), last - started)
        return out


def read_captions(path: str, max_samples: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The config and the samples of a caption file (VISTA's ``causal_caption_*.json``)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise VistaError(
            f"{path!r} does not exist; give the causal_caption_*.json files."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VistaError(f"{path!r} is not a JSON file ({e}).") from None
    samples = doc.get("samples") if isinstance(doc, dict) else None
    if not isinstance(samples, list) or not all(
        isinstance(s, dict) and "original_text" in s and "modified_text" in s for s in samples
    ):
        raise VistaError(
            f"{path!r} is not a caption file (samples with original_text and modified_text); "
            "the judge reads the causal_caption_*.json files of vista generate task=caption."
        )
    config = doc.get("config") or {}
    if "attribute" not in config or "intervention_mode" not in config:  # infer from the stem
        m = re.match(r"causal_caption_(.+)_([a-z_]+?)$", p.stem)
        if m:
            config = {"attribute": m.group(1), "intervention_mode": m.group(2), **config}
    return config, samples[:max_samples] if max_samples else samples


def _attributes(cfg: JudgeConfig, samples: list[dict[str, Any]]) -> list[str]:
    if cfg.attributes:
        return list(cfg.attributes)
    names: list[str] = []
    for s in samples:
        for a in s.get("labels_readable") or {}:
            if a not in names:
                names.append(a)
    return names or list(DESCRIPTIONS)


def _class_names(samples: list[dict[str, Any]], attribute: str) -> list[str]:
    """The attribute's classes as the samples name them (in label order where known)."""
    seen: dict[int, str] = {}
    for s in samples:
        readable, labels = s.get("labels_readable") or {}, s.get("labels") or {}
        if attribute in readable:
            seen[int(labels.get(attribute, len(seen)))] = str(readable[attribute])
    if attribute in DESCRIPTIONS and not seen:
        return list(text.FAIRFACE_SYNONYMS[attribute])
    return [seen[k] for k in sorted(seen)]


def _binary(
    judge: Judge, cfg: JudgeConfig, cond: str, samples: list[dict[str, Any]], r: Result
) -> None:
    rng = np.random.default_rng(cfg.seed)
    orig = [str(s["original_text"]) for s in samples]
    mod = [str(s["modified_text"]) for s in samples]
    for attr in _attributes(cfg, samples):
        answers = judge.ask([binary_prompt(c, attr) for c in orig + mod])
        parsed = [parse_yes_no(a) for a in answers]
        yes = np.array([p == "yes" for p in parsed], dtype=float)
        y0, y1 = yes[: len(orig)], yes[len(orig) :]
        e = paired_effect(y1 - y0, cfg.n_boot, cfg.n_perm, cfg.confidence, rng)
        kw = text.keywords(attr, _class_names(samples, attr))
        k0, k1 = text.hits(orig, kw), text.hits(mod, kw)
        ke = paired_effect(k1.astype(float) - k0, cfg.n_boot, cfg.n_perm, cfg.confidence, rng)
        r.add(f"{cond}/{attr}/llm_dcr_delta", e.value, "none", (e.low, e.high), e.n)
        r.add(f"{cond}/{attr}/keyword_dcr_delta", ke.value, "none", (ke.low, ke.high), ke.n)
        r.tables.setdefault("binary", []).append(
            {
                "condition": cond,
                "attribute": attr,
                "llm_dcr_original": float(y0.mean()),
                "llm_dcr_modified": float(y1.mean()),
                **e.row(),
                "keyword_dcr_original": float(k0.mean()),
                "keyword_dcr_modified": float(k1.mean()),
                "keyword_delta": ke.value,
                "unparsed": sum(p is None for p in parsed),
            }
        )
        r.tables.setdefault("answers", []).extend(
            {"condition": cond, "attribute": attr, "caption": which, "index": i, "answer": a}
            for which, part in (
                ("original", answers[: len(orig)]),
                ("modified", answers[len(orig) :]),
            )
            for i, a in enumerate(part[:20])
        )


def _pairwise(
    judge: Judge, cfg: JudgeConfig, cond: str, samples: list[dict[str, Any]], r: Result
) -> None:
    order = random.Random(cfg.seed)
    for attr in _attributes(cfg, samples):
        swapped = [order.random() < 0.5 for _ in samples]
        prompts = []
        for s, sw in zip(samples, swapped, strict=True):
            a, b = str(s["original_text"]), str(s["modified_text"])
            prompts.append(pairwise_prompt(b, a, attr) if sw else pairwise_prompt(a, b, attr))
        answers = judge.ask(prompts)
        counts = {"original": 0, "modified": 0, "tie": 0, "unparsed": 0}
        for ans, sw in zip(answers, swapped, strict=True):
            choice = parse_ab(ans)
            if choice is None:
                counts["unparsed"] += 1
            elif choice == "tie":
                counts["tie"] += 1
            else:
                counts["modified" if (choice == "B") != sw else "original"] += 1
        n = max(1, len(samples))
        for k, v in counts.items():
            r.add(f"{cond}/{attr}/pairwise_{k}", v / n, "none", n=len(samples))
        r.tables.setdefault("pairwise", []).append(
            {
                "condition": cond,
                "attribute": attr,
                **counts,
                "n": len(samples),
                "swapped": int(sum(swapped)),
            }
        )


def run_judge(cfg: JudgeConfig, out_dir: str) -> Result:
    """Judge every file; write ``out_dir/analyses/judge/``."""
    if cfg.mode not in ("binary", "pairwise"):
        raise VistaError(f"mode={cfg.mode!r} is not binary or pairwise.")
    if not cfg.files:
        raise VistaError("files is empty; give the causal_caption_*.json files to judge.")
    loaded = [(f, *read_captions(f, cfg.max_samples)) for f in cfg.files]
    judge = Judge(cfg)
    r = Result("judge")
    r.config = asdict(cfg)
    for path, config, samples in loaded:
        cond = f"{config.get('attribute', Path(path).stem)}/{config.get('intervention_mode', '?')}"
        log.info("judge: %s (%d captions, %s)", path, len(samples), cfg.mode)
        (_binary if cfg.mode == "binary" else _pairwise)(judge, cfg, cond, samples, r)
        r.metadata.setdefault("files", []).append(
            {"path": path, "condition": cond, "n_samples": len(samples)}
        )
    r.metadata["model_path"] = cfg.model_path
    ends = ("llm_dcr_delta", "keyword_dcr_delta", "pairwise_original", "pairwise_modified")
    r.headline = [k for k in r.scalars if k.endswith(ends)]
    r.write(out_dir)
    return r
