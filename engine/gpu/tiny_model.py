"""A tiny SDXL pipeline with random weights, built offline, for tests and development.

It has the same components and file layout as ``segmind/SSD-1B`` (two CLIP text encoders with
their tokenizers, a UNet with text-time conditioning, an 8x VAE and the SSD-1B scheduler
config), so the product's real ``from_pretrained`` path loads it unchanged. Its weights are
random, so images are noise, but they are deterministic for a seed.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

# The SSD-1B scheduler config (../shared/reference/ssd-1b/scheduler.json), so the tiny model
# samples with the same schedule as the real one.
SSD1B_SCHEDULER_CONFIG: dict[str, object] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def tiny_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A complete byte-level vocabulary (every byte, alone and word-final) plus a few merges.

    Every possible input tokenizes without unknown tokens, so the tokenizer behaves like the
    real one on any prompt: 77 tokens max, truncation, padding.
    """
    vocab: dict[str, int] = {}
    for ch in _bytes_to_unicode():
        vocab[ch] = len(vocab)
    for ch in _bytes_to_unicode():
        vocab[ch + "</w>"] = len(vocab)
    # a handful of merges so the BPE model is exercised, not only single bytes
    merges: list[tuple[str, str]] = []
    for a, b in [("t", "h"), ("th", "e</w>"), ("a", "n"), ("i", "n"), ("e", "r")]:
        merges.append((a, b))
        vocab.setdefault(a + b, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def build_tiny_pipeline(seed: int = 0):  # -> StableDiffusionXLPipeline
    """Build the tiny SDXL pipeline in memory (random weights fixed by ``seed``)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    torch.manual_seed(seed)
    vocab, merges = tiny_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer_2 = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)

    text_cfg = dict(
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(vocab),
        hidden_act="gelu",
        projection_dim=32,
        max_position_embeddings=77,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg))

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        # 6 time ids x 8 + the 32-dim pooled projection of text encoder 2
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    # four blocks give the same 8x latent downscale as the SDXL VAE
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=0.13025,
    )
    scheduler = EulerDiscreteScheduler.from_config(SSD1B_SCHEDULER_CONFIG)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )


def save_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny pipeline to ``out_dir`` in diffusers format (safetensors) and return it."""
    out_dir = Path(out_dir)
    pipe = build_tiny_pipeline(seed)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    log.info("tiny SDXL pipeline written to %s", out_dir)
    return out_dir


def save_tiny_lcm_lora(out_dir: Path, seed: int = 1) -> Path:
    """Write a tiny random LoRA for the tiny UNet, in the layout of an LCM-LoRA release.

    Used to test the fast-mode LoRA loading path offline (``load_lora_weights``).
    """
    import torch
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    out_dir = Path(out_dir)
    pipe = build_tiny_pipeline(0)
    torch.manual_seed(seed)
    # init_lora_weights=False draws both A and B at random; PEFT's "gaussian" zeroes B, which makes
    # a no-op LoRA that would hide a fast mode whose adapter is never applied
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                        init_lora_weights=False)
    pipe.unet.add_adapter(config)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionXLPipeline.save_lora_weights(out_dir, unet_lora_layers=state, safe_serialization=True)
    return out_dir


def build_tiny_taesd(seed: int = 2):  # -> AutoencoderTiny
    """A tiny random AutoencoderTiny with madebyollin/taesdxl's layout (4 latent channels, 8x upscale)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                           num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4)


def save_tiny_taesd(out_dir: Path, seed: int = 2) -> Path:
    """Write the tiny AutoencoderTiny to ``out_dir`` (loaded by the FAST_VAE_ID path, from_pretrained)."""
    out_dir = Path(out_dir)
    build_tiny_taesd(seed).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def build_tiny_classifier(seed: int = 3, score: float | None = None):  # -> ViTForImageClassification
    """A tiny ViT image classifier with the labels of NSFW detectors ("normal", "nsfw") and random weights.

    With ``score`` its head ignores the image and gives "nsfw" exactly that probability (tests that need
    every image flagged, or none); without it the head's random weights are scaled up, so different images
    get clearly different scores.
    """
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, id2label={0: "normal", 1: "nsfw"},
                       label2id={"normal": 0, "nsfw": 1})
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        if score is None:
            model.classifier.weight.mul_(40.0)
        else:
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor([0.0, math.log(score / (1 - score))]))
    return model


def save_tiny_classifier(out_dir: Path, seed: int = 3, score: float | None = None) -> Path:
    """Write the tiny classifier and its image processor to ``out_dir`` (loaded by SAFETY_MODEL_ID's path)."""
    from transformers import ViTImageProcessorPil

    out_dir = Path(out_dir)
    build_tiny_classifier(seed, score).save_pretrained(out_dir, safe_serialization=True)
    ViTImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3) \
        .save_pretrained(out_dir)
    return out_dir


# the tiny translation model's words: a few German ones in, only English ones out
_TRANSLATOR_IN = ("ein", "fuchs", "im", "schnee", "rote", "katze", "auf", "dem", "dach")
_TRANSLATOR_OUT = ("a", "fox", "in", "the", "snow", "red", "cat", "on", "roof")


def save_tiny_translator(out_dir: Path, seed: int = 4) -> Path:
    """A tiny sequence-to-sequence "translation" model with random weights (a BART with a word-level tokenizer),
    loadable by transformers' Auto classes like TRANSLATE_MODEL_ID's real one; it writes English words only."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {word: i for i, word in enumerate([*specials, *_TRANSLATOR_IN, *_TRANSLATOR_OUT])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    torch.manual_seed(seed)
    config = BartConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        decoder_start_token_id=2, forced_eos_token_id=2)
    model = BartForConditionalGeneration(config)
    with torch.no_grad():  # English words only: never a German word, a special token or the end (the length cap ends)
        model.final_logits_bias[0, [vocab[w] for w in (*specials, *_TRANSLATOR_IN)]] = -1e4
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """``python -m engine.gpu.tiny_model OUT_DIR [--lora LORA_DIR]``: write the tiny model."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--lora", type=Path, default=None, help="also write a tiny LCM-style LoRA here")
    parser.add_argument("--taesd", type=Path, default=None, help="also write a tiny AutoencoderTiny (FAST_VAE_ID) here")
    parser.add_argument("--classifier", type=Path, default=None,
                        help="also write a tiny NSFW image classifier (SAFETY_MODEL_ID) here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    save_tiny_model(args.out_dir, args.seed)
    print(f"tiny model: {args.out_dir}")
    if args.lora:
        save_tiny_lcm_lora(args.lora)
        print(f"tiny LoRA: {args.lora}")
    if args.taesd:
        save_tiny_taesd(args.taesd)
        print(f"tiny AutoencoderTiny: {args.taesd}")
    if args.classifier:
        save_tiny_classifier(args.classifier)
        print(f"tiny image classifier: {args.classifier}")


if __name__ == "__main__":
    main()
