"""Tiny randomly initialised Hugging Face models the tests build and save locally (no download):
a LLaVA-style VLM with its processor, a causal LM with a chat template, a ViT classifier."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = [
    "<pad>", "<s>", "</s>", "<unk>", "<image>", "USER:", "ASSISTANT:", "a", "man", "woman",
    "young", "old", "person", "photo", "of", "the", "is", "describe", "this", "image.", "what",
    "cat", "dog", "fox", "seven", "white", "black", "Yes", "No", "A", "B", "tie", "</think>",
]  # fmt: skip
CHAT = (
    "{% for m in messages %}{{ m['role'].upper() }}: "
    "{% if m['content'] is string %}{{ m['content'] }} {% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} "
    "{% endif %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def tokenizer() -> object:
    import transformers as t
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = t.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.chat_template = CHAT
    return tok


def _text_config() -> object:
    import transformers as t

    return t.LlamaConfig(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, initializer_range=0.5,
    )  # fmt: skip


def tiny_llava(root: Path) -> Path:
    """A LLaVA (CLIP vision tower, 32 px, 8 px patches: CLS + 16 tokens; Llama text model)."""
    import transformers as t

    torch.manual_seed(0)
    vision = t.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, initializer_range=0.5,
    )  # fmt: skip
    cfg = t.LlavaConfig(
        vision_config=vision, text_config=_text_config(), image_token_index=WORDS.index("<image>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full", image_seq_length=17,
    )  # fmt: skip
    model = t.LlavaForConditionalGeneration(cfg).eval()
    images = t.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = t.LlavaProcessor(
        image_processor=images, tokenizer=tokenizer(), patch_size=8, chat_template=CHAT,
        vision_feature_select_strategy="full", num_additional_image_tokens=1,
    )  # fmt: skip
    d = root / "tiny_llava"
    model.save_pretrained(d)
    proc.save_pretrained(d)
    return d


def tiny_causal_lm(root: Path) -> Path:
    import transformers as t

    torch.manual_seed(0)
    d = root / "tiny_lm"
    t.LlamaForCausalLM(_text_config()).save_pretrained(d)
    tokenizer().save_pretrained(d)  # type: ignore[attr-defined]
    return d


def tiny_vit_classifier(root: Path, n_classes: int = 3) -> Path:
    import transformers as t

    torch.manual_seed(0)
    cfg = t.ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, num_labels=n_classes,
    )  # fmt: skip
    d = root / "tiny_vit_cls"
    t.ViTForImageClassification(cfg).save_pretrained(d)
    t.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return d


def vlm_store(tmp: Path) -> Path:
    """An image folder (3 classes, 12 training and 4 validation images each) through the tiny
    LLaVA's vision tower (last block, CLS + 16 tokens of 32 dims), written by ``extract``."""
    from tests.sources.fixtures import make_image_folder
    from vista.sources.datasets import DatasetConfig
    from vista.sources.encoders import EncoderConfig
    from vista.sources.extract import extract

    root = make_image_folder(tmp / "imgs", per_class=12, split_dirs=True)
    enc = EncoderConfig(name="hf", path=str(tiny_llava(tmp)))
    return extract(
        DatasetConfig(name="imagefolder", root=str(root)), enc, tmp / "vlm.h5", dtype="float32"
    )
