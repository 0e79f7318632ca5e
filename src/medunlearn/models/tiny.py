"""The tiny presets: the real transformers classes built from small configs (no weights downloaded).

A preset is a size; ``build_tiny`` makes a freshly initialised model of it for a tokenizer
and an image side (the weights depend only on the seed), with the PIL (torchvision-free)
image processors. ``PRESET@scratch`` (:func:`build_scratch`) trains its tokenizer on the
hospital itself; a preset's pretrained base (models/pretrain.py) on the population.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlavaConfig, LlavaProcessor, Qwen2_5_VLConfig, Qwen2VLConfig
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError
from medunlearn.models.answer_length import longest_answer_limit
from medunlearn.models.tokenizer import corpus, train_tokenizer
from medunlearn.models.vlm import FAMILIES, Qwen2_5_VLImageOnlyProcessor, Qwen2VLImageOnlyProcessor, VisionLanguageModel


@dataclass(frozen=True)
class TinyPreset:
    """Sizes of a tiny model built from a config (no weights downloaded)."""

    family: str
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    vision_width: int = 64
    vision_depth: int = 2
    vision_heads: int = 4
    vision_mlp_ratio: int = 2
    vocab: int = 2048
    #: whether a pretrained base is built for it (the mid-size preset is only ever @scratch: pretraining it is
    #: hours on a CPU)
    pretrained: bool = True


PRESETS: dict[str, TinyPreset] = {
    "tiny-qwen2-vl": TinyPreset("qwen2_vl"),
    "tiny-qwen2.5-vl": TinyPreset("qwen2_5_vl"),
    "tiny-llava": TinyPreset("llava"),
    # about 150 M parameters (12 language layers of width 1024, a 6-block vision tower of width 384): the size at
    # which benchmarks/memory.py measures what unlearning holds per parameter
    "small-qwen2-vl": TinyPreset(
        "qwen2_vl",
        hidden=1024,
        layers=12,
        heads=16,
        kv_heads=4,
        intermediate=2816,
        vision_width=384,
        vision_depth=6,
        vision_heads=6,
        pretrained=False,
    ),
    # Qwen2-VL-2B's transformer (its config's sizes) with this tool's small tokenizer: about 2.0 B parameters, for
    # benchmarks/gpu_check.py on a GPU
    "qwen2-vl-2b-size": TinyPreset(
        "qwen2_vl",
        hidden=1536,
        layers=28,
        heads=12,
        kv_heads=2,
        intermediate=8960,
        vision_width=1280,
        vision_depth=32,
        vision_heads=16,
        vision_mlp_ratio=4,
        pretrained=False,
    ),
}


def image_side(dataset: HospitalDataset) -> int:
    first = dataset.images.ids[0]
    return max(dataset.images.decode(first).size)


def build_scratch(preset_name: str, dataset: HospitalDataset, *, seed: int) -> VisionLanguageModel:
    """``PRESET@scratch``: random weights and a tokenizer trained on the hospital itself (no base)."""
    preset = _preset(preset_name)
    tokenizer = train_tokenizer(
        corpus(dataset), vocab_size=preset.vocab, image_placeholder=FAMILIES[preset.family].image_placeholder
    )
    return build_tiny(
        preset_name,
        tokenizer,
        side=image_side(dataset),
        seed=seed,
        max_new_tokens=longest_answer_limit(tokenizer, dataset.samples),
    )


def _preset(preset_name: str) -> TinyPreset:
    if preset_name not in PRESETS:
        raise MedunlearnError(
            f"unknown model preset {preset_name!r}: use one of {', '.join(PRESETS)}, dual-encoder, or a model "
            "folder path."
        )
    return PRESETS[preset_name]


def build_tiny(preset_name: str, tokenizer, *, side: int, seed: int, max_new_tokens: int) -> VisionLanguageModel:
    """A freshly initialised tiny model of a named preset for this tokenizer and image side; the weights depend only on
    the seed."""
    preset = _preset(preset_name)
    family = FAMILIES[preset.family]
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in (
            "<|endoftext|>",
            "<|im_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|image_pad|>",
            "<|video_pad|>",
            "<image>",
        )
    }
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": preset.hidden,
        "intermediate_size": preset.intermediate,
        "num_hidden_layers": preset.layers,
        "num_attention_heads": preset.heads,
        "num_key_value_heads": preset.kv_heads,
        "max_position_embeddings": 1024,
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "bos_token_id": None,
        "tie_word_embeddings": False,
    }
    head_half = preset.hidden // preset.heads // 2
    mrope = [head_half - 2 * (head_half * 3 // 8), head_half * 3 // 8, head_half * 3 // 8]
    if preset.family == "qwen2_vl":
        config = Qwen2VLConfig(
            text_config={
                **text,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            },
            vision_config={
                "depth": preset.vision_depth,
                "embed_dim": preset.vision_width,
                "hidden_size": preset.hidden,
                "num_heads": preset.vision_heads,
                "mlp_ratio": preset.vision_mlp_ratio,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "in_channels": 3,
            },
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=False,
        )
    elif preset.family == "qwen2_5_vl":
        config = Qwen2_5_VLConfig(
            text_config={
                **text,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            },
            vision_config={
                "depth": preset.vision_depth,
                "hidden_size": preset.vision_width,
                "intermediate_size": preset.vision_mlp_ratio * preset.vision_width,
                "num_heads": preset.vision_heads,
                "out_hidden_size": preset.hidden,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "in_channels": 3,
                "window_size": 56,
                "fullatt_block_indexes": list(range(preset.vision_depth)),
            },
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=False,
        )
    else:
        config = LlavaConfig(
            vision_config={
                "model_type": "clip_vision_model",
                "hidden_size": preset.vision_width,
                "intermediate_size": preset.vision_mlp_ratio * preset.vision_width,
                "num_hidden_layers": preset.vision_depth,
                "num_attention_heads": preset.vision_heads,
                "image_size": side,
                "patch_size": 14,
            },
            text_config={
                **text,
                "model_type": "llama",
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            },
            image_token_id=ids["<image>"],
            projector_hidden_act="gelu",
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,
            tie_word_embeddings=False,
        )
    processor = _tiny_processor(preset.family, tokenizer, side)
    torch.manual_seed(seed)
    network = family.model_class(config)
    network.generation_config.pad_token_id = ids["<|endoftext|>"]
    network.generation_config.eos_token_id = ids["<|im_end|>"]
    network.generation_config.bos_token_id = None
    return VisionLanguageModel(
        network, processor, family, {"preset": preset_name, "seed": seed, "max_new_tokens": max_new_tokens}
    )


def _tiny_processor(family: str, tokenizer, side: int):
    if family == "llava":
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        return LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=14,
            vision_feature_select_strategy="default",
            chat_template=tokenizer.chat_template,
            image_token="<image>",
            num_additional_image_tokens=1,
        )
    pixels = side * side
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": pixels, "longest_edge": pixels})
    cls = Qwen2VLImageOnlyProcessor if family == "qwen2_vl" else Qwen2_5_VLImageOnlyProcessor
    return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)
