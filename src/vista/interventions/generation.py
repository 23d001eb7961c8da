"""Greedy generation by a vision-language model, clean and with an edit spliced into its vision
tower (docs/originals.md §4.6).

The prompt goes through the processor's chat template when it has one (Qwen2-VL, LLaVA, ...:
the image first, then the text, then the generation prompt); a processor without one (PaliGemma)
takes the bare prompt and inserts the image tokens itself. Batches are padded on the left, as
decoder-only generation needs. The vision tower runs once per batch (the first step; later steps
read the cache), so the edit acts on the image's tokens exactly once.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vista.interventions.hooks import Edit, Splice
from vista.sources.encoders.hf import as_rgb_uint8

if TYPE_CHECKING:
    from vista.interventions.model import Model


def default_caption_prompt(processor: Any) -> str:
    """PaliGemma's task prefix ``caption en``; a plain instruction for chat models."""
    return "caption en" if "PaliGemma" in type(processor).__name__ else "Describe this image."


def prompt_text(processor: Any, prompt: str) -> str:
    """The text the processor takes for one image and ``prompt``."""
    if getattr(processor, "chat_template", None):
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
        ]
        return str(
            processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )
    return prompt


@torch.no_grad()
def generate(
    m: Model,
    images: list[np.ndarray],
    prompt: str,
    edit: Edit | None,
    max_new_tokens: int,
    d_model: int,
    prefix_tokens: int = 0,
    registers: int = 0,
) -> list[str]:
    """The model's greedy answers to ``prompt`` on ``images`` (``edit=None``: the clean model)."""
    proc = m.processor
    tok = getattr(proc, "tokenizer", None)
    if tok is not None:
        tok.padding_side = "left"
    text = prompt_text(proc, prompt)
    inputs = proc(images=as_rgb_uint8(images), text=[text] * len(images), return_tensors="pt",
                  padding=True)  # fmt: skip
    dtype = next(m.full.parameters()).dtype
    batch = {
        k: (v.to(m.device, dtype) if k == "pixel_values" else v.to(m.device))
        for k, v in inputs.items()
        if isinstance(v, torch.Tensor)
    }
    hook: Any = contextlib.nullcontext()
    if edit is not None:
        hook = Splice(m.module, edit, d_model, m.tokens, prefix_tokens, registers)
    with hook:
        out = m.full.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    new = out[:, batch["input_ids"].shape[1] :]
    decode = tok.batch_decode if tok is not None else proc.batch_decode
    return [s.strip() for s in decode(new, skip_special_tokens=True)]
