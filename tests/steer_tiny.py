"""Tiny randomly initialised causal LMs for the steering tests (no download, built from configs).

``tiny_model(arch)`` returns ``(model, tokenizer)``: a model of the named architecture with
``n_layers`` blocks of width ``hidden`` (4 heads, vocabulary 128) in eval mode, float32, and a
character-level tokenizer (printable ASCII, ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3,
left padding) that every architecture shares. ``tiny_multimodal()`` wraps a tiny Llama in a
vision-language style module (``model.language_model`` next to a deeper ``vision_tower``).

An architecture whose config class the installed transformers lacks is skipped with a reason
(``pytest.skip``), so the same test file runs on transformers 4.x and 5.x.

>>> model, tok = tiny_model("llama")
>>> model(**tok(["Paris is in France."], return_tensors="pt")).logits.shape[-1]
128
"""

from __future__ import annotations

import string
from functools import lru_cache

import pytest

VOCAB_SIZE = 128          # >= 4 special tokens + 95 printable ASCII characters + newline
HEADS = 4
PAD, BOS, EOS, UNK = 0, 1, 2, 3

#: Questions with a true and a false statement each: a small contrast set for tiny models.
TRUE_FALSE_FACTS = [("What colour is the sky?", "The sky is blue", "The sky is green"),
         ("How many legs has a cat?", "A cat has four legs", "A cat has six legs"),
         ("Is ice cold?", "Ice is cold", "Ice is hot"),
         ("What do bees make?", "Bees make honey", "Bees make milk"),
         ("Where does the sun rise?", "The sun rises in the east", "The sun rises in the west"),
         ("Is water wet?", "Water is wet", "Water is dry"),
         ("What is 2+2?", "It is 4", "It is 5"),
         ("Do fish swim?", "Fish swim", "Fish fly"),
         ("Is fire hot?", "Fire is hot", "Fire is cold"),
         ("What do cows eat?", "Cows eat grass", "Cows eat rocks"),
         ("Is snow white?", "Snow is white", "Snow is black"),
         ("Do birds fly?", "Most birds fly", "No bird flies")]

# architecture -> (config class name, config keywords given (n_layers, hidden))
_CONFIGS = {
    "llama": ("LlamaConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                               num_attention_heads=HEADS, num_key_value_heads=2)),
    "mistral": ("MistralConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                                   num_attention_heads=HEADS, num_key_value_heads=2,
                                                   head_dim=h // HEADS, sliding_window=None)),
    "qwen2": ("Qwen2Config", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                               num_attention_heads=HEADS, num_key_value_heads=2,
                                               use_sliding_window=False)),
    "qwen3": ("Qwen3Config", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                               num_attention_heads=HEADS, num_key_value_heads=2,
                                               head_dim=h // HEADS, use_sliding_window=False)),
    "gemma": ("GemmaConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                               num_attention_heads=HEADS, num_key_value_heads=1,
                                               head_dim=h // HEADS)),
    "gemma2": ("Gemma2Config", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                                 num_attention_heads=HEADS, num_key_value_heads=2,
                                                 head_dim=h // HEADS, sliding_window=16)),
    "gemma3": ("Gemma3TextConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h,
                                                     intermediate_size=2 * h, num_attention_heads=HEADS,
                                                     num_key_value_heads=2, head_dim=h // HEADS,
                                                     sliding_window=16)),
    "gpt_neox": ("GPTNeoXConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h,
                                                    intermediate_size=2 * h, num_attention_heads=HEADS)),
    "gpt2": ("GPT2Config", lambda n, h: dict(n_layer=n, n_embd=h, n_head=HEADS, n_positions=256)),
    "opt": ("OPTConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, ffn_dim=2 * h,
                                           num_attention_heads=HEADS, word_embed_proj_dim=h)),
    "bloom": ("BloomConfig", lambda n, h: dict(n_layer=n, hidden_size=h, n_head=HEADS)),
    "falcon": ("FalconConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, num_attention_heads=HEADS)),
    "phi": ("PhiConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                           num_attention_heads=HEADS)),
    "olmo": ("OlmoConfig", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                             num_attention_heads=HEADS)),
    "olmo2": ("Olmo2Config", lambda n, h: dict(num_hidden_layers=n, hidden_size=h, intermediate_size=2 * h,
                                               num_attention_heads=HEADS)),
}

TINY_ARCHS: list[str] = list(_CONFIGS)

# Where find_layers must find the decoder blocks of each architecture (transformers 4.45+ and 5.x).
EXPECTED_LAYERS_PATH: dict[str, str] = {
    "llama": "model.layers", "mistral": "model.layers", "qwen2": "model.layers", "qwen3": "model.layers",
    "gemma": "model.layers", "gemma2": "model.layers", "gemma3": "model.layers", "gpt_neox": "gpt_neox.layers",
    "gpt2": "transformer.h", "opt": "model.decoder.layers", "bloom": "transformer.h", "falcon": "transformer.h",
    "phi": "model.layers", "olmo": "model.layers", "olmo2": "model.layers",
}


def make_tokenizer(*, pad: bool = True):
    """A new character-level fast tokenizer over printable ASCII and the newline (left padding; ``pad=False``:
    without a pad token, as many real tokenizers come)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    chars = [c for c in string.printable if c.isprintable()] + ["\n"]  # 95 printable ASCII characters, newline
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    assert len(vocab) <= VOCAB_SIZE
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()  # decode gives the text back (no space between characters)
    named = {"pad_token": "<pad>"} if pad else {}
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>",
                                  unk_token="<unk>", **named)
    tok.padding_side = "left"
    return tok


@lru_cache(maxsize=1)
def tiny_tokenizer():
    """The shared tokenizer of the tiny models (``make_tokenizer()``, made once; do not modify)."""
    return make_tokenizer()


def _config(arch: str, n_layers: int, hidden: int):
    import transformers

    if arch not in _CONFIGS:
        raise KeyError(f"no tiny config for {arch!r}; known: {', '.join(TINY_ARCHS)}")
    cls_name, make = _CONFIGS[arch]
    cls = getattr(transformers, cls_name, None)
    if cls is None:
        pytest.skip(f"transformers {transformers.__version__} has no {cls_name} ({arch})")
    cfg = cls(vocab_size=VOCAB_SIZE, max_position_embeddings=256, pad_token_id=PAD, bos_token_id=BOS,
              eos_token_id=EOS, **make(n_layers, hidden))
    return cfg


def tiny_model(arch: str, *, n_layers: int = 2, hidden: int = 32, seed: int = 0):
    """``(model, tokenizer)``: a random ``arch`` causal LM built from a config, eval mode, float32.

    Weights are drawn with ``torch.manual_seed(seed)``; the same arguments give the same weights.
    The tokenizer is the shared character-level one (``tiny_tokenizer()``).
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    cfg = _config(arch, n_layers, hidden)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model.eval()
    return model, tiny_tokenizer()


def tiny_multimodal(*, n_layers: int = 2, hidden: int = 32, vision_layers: int | None = None, seed: int = 0):
    """A vision-language style wrapper: ``model.language_model`` (a tiny Llama base model) next to
    a ``model.vision_tower.layers`` block list (``vision_layers`` entries, ``n_layers`` by
    default, so only the names tell the towers apart), and an ``lm_head``. Registered vision
    first, as real multimodal models do. Returns ``(wrapper, tokenizer)``."""
    import torch
    from torch import nn
    from transformers import AutoModel

    torch.set_num_threads(1)
    cfg = _config("llama", n_layers, hidden)
    torch.manual_seed(seed)

    class _VisionTower(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(vision_layers or n_layers))

    class _Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.vision_tower = _VisionTower()
            self.language_model = AutoModel.from_config(cfg, attn_implementation="eager")

    class TinyVisionLanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = cfg
            self.model = _Inner()
            self.lm_head = nn.Linear(hidden, VOCAB_SIZE, bias=False)

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            out = self.model.language_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            out.logits = self.lm_head(out.last_hidden_state)
            return out

    model = TinyVisionLanguageModel().eval()
    return model, tiny_tokenizer()


def save_tiny_llama(folder, *, n_layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2,
                    max_positions: int = 4096, seed: int = 0):
    """A randomly initialised tiny Llama and the test tokenizer saved in ``folder`` (a model a
    user would pass as a local path; ``max_positions`` long enough for lm-eval's primer)."""
    import torch
    import transformers

    cfg = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=n_layers,
                                   num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=VOCAB_SIZE,
                                   max_position_embeddings=max_positions, pad_token_id=PAD, bos_token_id=BOS,
                                   eos_token_id=EOS)
    torch.manual_seed(seed)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder
