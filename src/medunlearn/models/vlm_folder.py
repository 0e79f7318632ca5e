"""Reading a vision-language model from a folder: a medunlearn model or real Hugging Face weights.

The architecture comes from ``config.json``, the weights load in bf16 on CUDA (float32 on
a CPU), and the processor is rebuilt from its image processor and tokenizer — the Qwen
processors through the image-only subclasses of :mod:`medunlearn.models.vlm`, which work
without torchvision.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, LlavaProcessor
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from medunlearn.errors import MedunlearnError
from medunlearn.models.card import architecture, read_model_card
from medunlearn.models.vlm import FAMILIES, Qwen2_5_VLImageOnlyProcessor, Qwen2VLImageOnlyProcessor, VisionLanguageModel


def placement() -> tuple[torch.dtype, str | None]:
    """Where a VLM's weights go: bf16 on a GPU, float32 on a CPU. One process alone may spread a model over every
    visible GPU (``auto``); under a launcher (accelerate, torchrun) each process holds a whole replica on its own GPU,
    which the launcher's data parallelism expects — except under DeepSpeed ZeRO-3, which partitions the weights as
    they load and refuses a ``device_map``."""
    if not torch.cuda.is_available():
        return torch.float32, None
    if zero3():
        return torch.bfloat16, None
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return torch.bfloat16, (f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if launched else "auto")


def zero3() -> bool:
    """Whether this process runs under DeepSpeed ZeRO stage 3 (accelerate's launcher says so in the environment;
    transformers knows once accelerate has made its DeepSpeed configuration)."""
    return os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3" or is_deepspeed_zero3_enabled()


def place_built(network: torch.nn.Module) -> torch.nn.Module:
    """A VLM built in memory (``PRESET@scratch``, a pretrained base being built) goes where a loaded one would: on a
    GPU in bf16, on this process's GPU (one GPU: a built model is not spread); unchanged on a CPU."""
    dtype, device_map = placement()
    if device_map is None:
        return network
    device = device_map if device_map.startswith("cuda:") else "cuda:0"
    return network.to(device=device, dtype=dtype)


def load_vlm(folder: Path) -> VisionLanguageModel:
    """Load a saved medunlearn model or real weights (e.g. Qwen2.5-VL-3B, LLaVA-1.5) from a folder."""
    folder = Path(folder)
    model_type = architecture(folder)
    if model_type not in FAMILIES:
        raise MedunlearnError(
            f"{folder} holds a {model_type} model, not a vision-language model; load it with load_model."
        )
    family = FAMILIES[model_type]
    card = read_model_card(folder)
    dtype, device_map = placement()
    network = family.model_class.from_pretrained(folder, dtype=dtype, device_map=device_map)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    chat_template = _chat_template(folder) or tokenizer.chat_template
    if model_type == "llava":
        image_processor = CLIPImageProcessorPil.from_pretrained(folder)
        settings = _processor_settings(folder)
        processor = LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=settings.get("patch_size", network.config.vision_config.patch_size),
            vision_feature_select_strategy=settings.get(
                "vision_feature_select_strategy", network.config.vision_feature_select_strategy
            ),
            chat_template=chat_template,
            image_token=settings.get("image_token", "<image>"),
            num_additional_image_tokens=settings.get("num_additional_image_tokens", 1),
        )
    else:
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
        cls = Qwen2VLImageOnlyProcessor if model_type == "qwen2_vl" else Qwen2_5_VLImageOnlyProcessor
        processor = cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return VisionLanguageModel(
        network, processor, family, {k: v for k, v in card.items() if k != "family"} or {"source": str(folder)}
    )


def _processor_settings(folder: Path) -> dict[str, Any]:
    path = folder / "processor_config.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return data.get("processor", data) if isinstance(data, dict) else {}
    return {}


def _chat_template(folder: Path) -> str | None:
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text()).get("chat_template")
    return None
