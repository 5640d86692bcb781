"""A randomly initialised miniature of Stable Diffusion's components, built from config with nothing
downloaded: the tests' pipeline, and ``weights = "random-tiny"`` for checking the whole ReGL path on a
machine without real weights (its images are noise-like: the numbers it gives measure nothing).

The tokenizer is CLIP's byte-level BPE with no merges, over a vocabulary of the 256 byte symbols (each
also as a word end) and the two special tokens, so any prompt tokenizes, one symbol at a time.
"""
from __future__ import annotations

import torch

# 16 tokens are enough for "a photo of a <class>" at one token per character of the short class names.
MAX_TOKENS = 16


def byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE writes bytes as (GPT-2's table, which CLIP uses)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def tiny_tokenizer():
    from transformers import CLIPTokenizer
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for symbol in byte_symbols():
            vocab[symbol + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = MAX_TOKENS
    return tokenizer


def tiny_components(seed: int = 0) -> dict:
    """UNet, VAE, text encoder, tokenizer and a DDIM scheduler config, tiny and random (from ``seed``).
    The VAE halves each side once, so the UNet's 8 x 8 latents decode to 16 x 16 images."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=16,
                                    attention_head_dim=4,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                            norm_num_groups=4, sample_size=16,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                                    num_attention_heads=2, num_hidden_layers=1,
                                                    max_position_embeddings=MAX_TOKENS, bos_token_id=0,
                                                    eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, set_alpha_to_one=False)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler_config": scheduler.config}
