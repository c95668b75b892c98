#!/usr/bin/env python3
"""judgeflow's TRL SFT trainer: trains a model on an sft-set's TRL conversational JSONL export.

Usage: python3 trainers/sft.py --config <train-config.json>
The config (written by the `train` stage) holds:
  data        the JSONL: {"messages": [{"role", "content": str | [{"type": "text", "text"} | {"type": "image"}]}],
              "images": [path, ...] (relative to the file or absolute), "captions": [str, ...] (optional)}
  base_model  a plain transformers model folder
  output      the checkpoint folder to write (model + tokenizer/processor)
  metrics     metrics.jsonl: one {"step", "loss", "learning_rate", ...} line per logged step
  hyperparams SFTConfig fields (max_steps, per_device_train_batch_size, learning_rate, ...), plus
              `threads`: torch's CPU threads (1 avoids oversubscribing a shared machine)

A text model trains on the captions in place of images (each image part becomes its caption's
text, as the distillation itself reads captions); a vision-language model gets the images.
Loss is on the last assistant turn only (prompt/completion). Exit codes: 0 done, 2 bad config or
data (the message names the file, the line and the fix), anything else: the training crashed.
"""
import argparse
import json
import os
import sys
import time

DEFAULTS = {
    "max_steps": 8,
    "per_device_train_batch_size": 2,
    "learning_rate": 5e-5,
    "logging_steps": 1,
    "seed": 0,
    "max_length": 1024,
    # Small models on CPU: recomputing activations costs more than it saves.
    "gradient_checkpointing": False,
}


class DataError(Exception):
    pass


def load_rows(path):
    rows = []
    base = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not JSON ({e})")
            msgs = row.get("messages")
            if not isinstance(msgs, list) or len(msgs) < 2 or msgs[-1].get("role") != "assistant":
                raise DataError(f"{path}:{n}: messages must be a list ending with an assistant turn")
            images = [p if os.path.isabs(p) else os.path.join(base, p) for p in row.get("images", [])]
            n_parts = sum(1 for m in msgs if isinstance(m.get("content"), list) for p in m["content"] if p.get("type") == "image")
            if n_parts != len(images):
                raise DataError(f"{path}:{n}: {n_parts} image part(s) but {len(images)} image path(s)")
            row["images"] = images
            row["_line"] = n
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def text_messages(row):
    """Messages with string content: image parts become their captions (text models)."""
    caps = list(row.get("captions", []))
    k = 0
    out = []
    for m in row["messages"]:
        c = m["content"]
        if isinstance(c, list):
            parts = []
            for p in c:
                if p.get("type") == "image":
                    if k < len(caps) and caps[k]:
                        parts.append(caps[k])
                    k += 1
                elif p.get("type") == "text":
                    parts.append(p["text"])
            c = "\n\n".join(parts)
        out.append({"role": m["role"], "content": c})
    return out


def vl_messages(row):
    """Messages with typed parts kept (vision-language models); images load separately."""
    return [{"role": m["role"], "content": m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]} for m in row["messages"]]


def to_example(row, vision):
    msgs = vl_messages(row) if vision else text_messages(row)
    ex = {"prompt": msgs[:-1], "completion": msgs[-1:]}
    if vision:
        from PIL import Image

        ex["images"] = [Image.open(p).convert("RGB") for p in row["images"]]
    return ex


def is_vision(config):
    return getattr(config, "vision_config", None) is not None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    try:
        with open(args.config) as f:
            cfg = json.load(f)
        for k in ("data", "base_model", "output", "metrics"):
            if not isinstance(cfg.get(k), str):
                raise DataError(f"{args.config}: field {k} is missing (a path)")
        if not os.path.isdir(cfg["base_model"]):
            raise DataError(f"{args.config}: base_model {cfg['base_model']} is not a folder (scripts/prepare-smollm2.py prepares SmolLM2)")
        rows = load_rows(cfg["data"])
    except (DataError, OSError, json.JSONDecodeError) as e:
        print(f"sft.py: {e}", file=sys.stderr)
        sys.exit(2)

    # Progress bars would fill the job's log (whose tail the stage keeps): metrics.jsonl has the steps.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    hp = {**DEFAULTS, **cfg.get("hyperparams", {})}
    threads = hp.pop("threads", None)
    if threads:
        torch.set_num_threads(int(threads))
    config = AutoConfig.from_pretrained(cfg["base_model"])
    vision = is_vision(config)
    if vision:
        model = AutoModelForImageTextToText.from_pretrained(cfg["base_model"], dtype=torch.float32)
        processing = AutoProcessor.from_pretrained(cfg["base_model"])
    else:
        model = AutoModelForCausalLM.from_pretrained(cfg["base_model"], dtype=torch.float32)
        processing = AutoTokenizer.from_pretrained(cfg["base_model"])
    data = Dataset.from_list([to_example(r, vision) for r in rows])

    metrics_path = cfg["metrics"]
    os.makedirs(os.path.dirname(os.path.abspath(metrics_path)), exist_ok=True)
    started = time.time()

    class Metrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            line = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}, "elapsed_s": round(time.time() - started, 2)}
            with open(metrics_path, "a") as f:
                f.write(json.dumps(line) + "\n")
                f.flush()
            print(f"step {state.global_step}: loss {logs['loss']:.4f}", flush=True)

    sft_fields = {k: v for k, v in hp.items()}
    sft = SFTConfig(
        output_dir=os.path.join(os.path.dirname(os.path.abspath(cfg["output"])), "trainer-state"),
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
        **sft_fields,
    )
    print(f"sft.py: {len(rows)} rows, {'vision-language' if vision else 'text'} model {cfg['base_model']}, hyperparams {json.dumps(hp)}", flush=True)
    trainer = SFTTrainer(model=model, args=sft, train_dataset=data, processing_class=processing, callbacks=[Metrics()])
    result = trainer.train()
    trainer.save_model(cfg["output"])
    processing.save_pretrained(cfg["output"])
    with open(os.path.join(cfg["output"], "judgeflow-train.json"), "w") as f:
        json.dump({"rows": len(rows), "hyperparams": {**hp, **({"threads": threads} if threads else {})}, "train_loss": result.training_loss, "steps": result.global_step, "seconds": round(time.time() - started, 1)}, f, indent=2)
    print(f"sft.py: wrote {cfg['output']} ({result.global_step} steps, train loss {result.training_loss:.4f}, {time.time() - started:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
