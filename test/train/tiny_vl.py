#!/usr/bin/env python3
"""Multimodal path of trainers/sft.py on real images: builds a tiny Qwen2.5-VL from a config
(random weights; text side from SmolLM2's tokenizer with Qwen's vision tokens added), turns the
fixture's rows into examples with sft.py's own conversion (images kept), collates them through
TRL's vision-language collator and takes two optimizer steps. Prints one JSON line of figures the
vitest test checks. Usage: tiny_vl.py <smollm2 folder> <sft jsonl>
The processor is image-only: Qwen's video processor needs torchvision, whose PyPI build does not
load against the CPU torch wheel.
"""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoTokenizer, ProcessorMixin, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "trainers"))
import sft  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ p['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ImageOnlyProcessor(Qwen2_5_VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = "<|image_pad|>"
        self.video_token = "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def build(smollm2):
    tok = AutoTokenizer.from_pretrained(smollm2)
    tok.add_special_tokens({"additional_special_tokens": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]})
    # The PIL image processor: no torchvision needed.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    images = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    proc = ImageOnlyProcessor(image_processor=images, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    head_dim = 16  # hidden 64 / 4 heads; mrope_section must sum to head_dim / 2
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=2048, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[1], window_size=56),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    assert sum(cfg.text_config.rope_scaling["mrope_section"]) == head_dim // 2
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    return model, proc


def main():
    smollm2, data = sys.argv[1:3]
    model, proc = build(smollm2)
    rows = sft.load_rows(data)[:4]
    examples = [sft.to_example(r, vision=True) for r in rows]
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    # As SFTTrainer builds it for prompt-completion data: loss on the completion only.
    collate = DataCollatorForVisionLanguageModeling(proc, completion_only_loss=True)
    batch = collate(examples)
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "labels")}
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    grads = 0
    for step in range(2):
        opt.zero_grad()
        out = model(**inputs)
        out.loss.backward()
        if step == 0:
            grads = sum(1 for p in model.model.visual.parameters() if p.grad is not None and float(p.grad.abs().sum()) > 0)
        opt.step()
        losses.append(out.loss.item())
    grid = batch["image_grid_thw"]
    labelled = batch["labels"] != -100
    print(json.dumps({
        "rows": len(examples),
        "images": len(grid),
        "pixel_values": list(batch["pixel_values"].shape),
        "grid": grid.tolist(),
        "patches": int(grid.prod(dim=1).sum()),
        "image_tokens": int((batch["input_ids"] == model.config.image_token_id).sum()),
        "merge": proc.image_processor.merge_size,
        "labelled_image_tokens": int((labelled & (batch["input_ids"] == model.config.image_token_id)).sum()),
        "labelled_tokens": int(labelled.sum()),
        "losses": losses,
        "vision_params_with_grad": grads,
        "vision_params": sum(1 for _ in model.model.visual.parameters()),
    }))


if __name__ == "__main__":
    main()
