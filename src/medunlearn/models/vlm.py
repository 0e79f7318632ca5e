"""Hugging Face vision-language adapter: Qwen2-VL, Qwen2.5-VL and LLaVA behind the model protocol.

The tiny presets (models/tiny.py) are the same transformers classes built from small configs, with a
tokenizer trained offline on the benchmark corpus and the PIL (torchvision-free) image
processors, so the code path that runs on CPU in CI is the one that runs real weights
on a GPU.

Prompt: a chat turn with the image then the question (the processor's own chat
template), then the answer and the end-of-turn token; only answer tokens carry loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import (
    GenerationConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    StoppingCriteriaList,
)
from transformers.image_utils import SizeDict

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError, check_integer
from medunlearn.models.answer_length import RowLimits, answer_kind, answer_limits
from medunlearn.models.base import (
    Batch,
    EditableLinear,
    MultimodalModel,
    calibrated_log_probs,
)
from medunlearn.models.image_budget import CARD_KEY as IMAGE_BUDGET_KEY
from medunlearn.models.image_budget import IMAGE_CACHE_BYTES, ImageBudget, ImageCache
from medunlearn.models.tokenizer import (
    IM_START,
    LLAVA_IMAGE,
    LLAVA_IMAGE_PLACEHOLDER,
    QWEN_IMAGE_PLACEHOLDER,
)

IGNORE = -100


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor without the video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )


@dataclass(frozen=True)
class Family:
    name: str
    model_class: type
    config_class: type
    projector: str  # module path of the vision-language projector
    image_placeholder: str


FAMILIES: dict[str, Family] = {
    "qwen2_vl": Family(
        "qwen2_vl", Qwen2VLForConditionalGeneration, Qwen2VLConfig, "model.visual.merger", QWEN_IMAGE_PLACEHOLDER
    ),
    "qwen2_5_vl": Family(
        "qwen2_5_vl",
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLConfig,
        "model.visual.merger",
        QWEN_IMAGE_PLACEHOLDER,
    ),
    "llava": Family(
        "llava", LlavaForConditionalGeneration, LlavaConfig, "model.multi_modal_projector", LLAVA_IMAGE_PLACEHOLDER
    ),
}


#: the most pixels an image may be resized to (a 16-megapixel radiograph)
MAX_PIXELS = 16_000_000


class VisionLanguageModel(MultimodalModel):
    """A transformers vision-language model with its processor, behind the model protocol."""

    def __init__(self, network: nn.Module, processor: Any, family: Family, card: dict[str, Any]) -> None:
        self.network = network
        self.processor = self.preprocessor = processor
        self.tokenizer = processor.tokenizer
        self.family = family.name
        self._family = family
        self.card = {"family": family.name, **card}
        self.dataset = None
        self.image_token_id = int(network.config.image_token_id)
        self.eos_id = int(self.tokenizer.convert_tokens_to_ids(self.tokenizer.eos_token))
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id)
        self._image_cache = ImageCache(IMAGE_CACHE_BYTES)
        self._prompt_cache: dict[tuple[str, str], list[int]] = {}
        self._limits: dict[str, int] | None = None

    # -- inputs -------------------------------------------------------------------------
    def attach(self, dataset: HospitalDataset) -> None:
        if dataset is not self.dataset:
            self._image_cache.clear()
            self._prompt_cache.clear()
            self._limits = None
        self.dataset = dataset

    def _image(self, image_id: str) -> tuple[np.ndarray, int]:
        """One image as the processor resizes it (uint8, channels first; cached within the byte budget) and its number
        of vision tokens."""
        cached = self._image_cache.get(image_id)
        if cached is None:
            if self.dataset is None:
                raise MedunlearnError("the model has no dataset attached; call model.attach(dataset) first.")
            picture = self.dataset.images.decode(image_id).convert("RGB")
            prompt = self.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}]}], tokenize=False
            )
            encoded = self.processor(text=[prompt], images=[picture], return_tensors="pt")
            cached = (self._resized(picture), int((encoded["input_ids"] == self.image_token_id).sum()))
            self._image_cache.put(image_id, cached)
        return cached

    def _resized(self, picture: Image.Image) -> np.ndarray:
        """The image as the processor resizes (and, for CLIP, crops) it, before rescaling: uint8, channels first —
        a quarter of the processor's float32 output (tests/models/test_vlm.py: the pixels are the same)."""
        processor = self.processor.image_processor
        if self.family == "llava":  # resized and cropped, not rescaled or normalised: whole numbers
            raw = processor(images=[picture], do_rescale=False, do_normalize=False, return_tensors="np")
            return raw["pixel_values"][0].astype(np.uint8)
        factor = processor.patch_size * processor.merge_size
        image = np.asarray(picture).transpose(2, 0, 1)
        return processor.resize(image, size=processor.size, resample=processor.resample, factor=factor)

    def _pixels(self, image_ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """The processor's output for these images, from their cached resized form (one call per batch)."""
        processor = self.processor.image_processor
        kept = {"do_center_crop": False} if self.family == "llava" else {}
        encoded = processor(
            images=[self._image(i)[0] for i in image_ids],
            do_resize=False,
            input_data_format="channels_first",
            return_tensors="pt",
            **kept,
        )
        return dict(encoded)

    def _prompt_ids(self, sample: Sample, *, cache: bool = True) -> list[int]:
        key = (sample.image, sample.question)
        ids = self._prompt_cache.get(key) if cache else None
        if ids is None:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sample.question}]}]
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            raw = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            _, n_tokens = self._image(sample.image)
            ids = []
            for token in raw:  # the processor's own expansion: one placeholder → n vision tokens
                ids.extend([token] * n_tokens if token == self.image_token_id else [token])
            if cache:
                self._prompt_cache[key] = ids
        return ids

    def _answer_ids(self, answer: str) -> list[int]:
        return self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.eos_id]

    def batch(
        self, samples: Sequence[Sample], *, with_answer: bool = True, texts: Sequence[str] | None = None
    ) -> Batch:
        rows, labels = [], []
        if texts is not None:
            samples = [dataclasses.replace(s, question=t) for s, t in zip(samples, texts, strict=True)]
        for s in samples:
            prompt = self._prompt_ids(s, cache=texts is None)
            answer = self._answer_ids(s.answer) if with_answer else []
            rows.append(prompt + answer)
            labels.append([IGNORE] * len(prompt) + answer)
        width = max(len(r) for r in rows)
        left = not with_answer  # generation pads on the left
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        label_ids = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (r, lab) in enumerate(zip(rows, labels, strict=True)):
            sl = slice(width - len(r), width) if left else slice(0, len(r))
            input_ids[i, sl] = torch.tensor(r)
            label_ids[i, sl] = torch.tensor(lab)
            attention[i, sl] = 1
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention}
        if self.family != "llava":  # M-RoPE needs to know which positions are vision tokens
            inputs["mm_token_type_ids"] = torch.tensor(
                self.processor.create_mm_token_type_ids(input_ids.tolist()), dtype=torch.long
            )
        inputs.update(self._pixels([s.image for s in samples]))
        vision = input_ids == self.image_token_id
        answer_mask = torch.zeros_like(attention, dtype=torch.bool)
        answer_mask[:, :-1] = label_ids[:, 1:] != IGNORE
        return Batch(
            sample_ids=[s.id for s in samples],
            inputs=inputs,
            labels=label_ids,
            answer_mask=answer_mask,
            vision_mask=vision,
            text_mask=attention.bool() & ~vision,
        )

    def conversation_batch(self, samples: Sequence[Sample]) -> Batch:
        """The whole conversation through the processor's own call, padded by it, as the authors' CHIP code
        (``_make_collate`` of fengli-wu/MedForget's ``chip/chip.py``) builds its batches.

        Qwen: the chat template over the user's image and question and the answer as the assistant's turn (no
        generation header, the template's end-of-turn after the answer); labels are the tokens after the first
        assistant header. LLaVA: ``USER: <image>\\n{question}\\nASSISTANT: {answer}``, truncated as the processor
        truncates; labels are every token. Padding is never a label. The vision span is every image token (the
        authors take Qwen's between its vision start and end tokens, the same positions, and LLaVA's as 576 tokens
        from the first, llava-1.5's count).
        """
        if self.dataset is None:
            raise MedunlearnError("the model has no dataset attached; call model.attach(dataset) first.")
        pictures = [self.dataset.images.decode(s.image).convert("RGB") for s in samples]
        if self.family == "llava":
            texts = [f"USER: {LLAVA_IMAGE}\n{s.question}\nASSISTANT: {s.answer}" for s in samples]
            encoded = self.processor(text=texts, images=pictures, padding=True, truncation=True, return_tensors="pt")
        else:
            texts = [
                self.processor.apply_chat_template(
                    [
                        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": s.question}]},
                        {"role": "assistant", "content": s.answer},
                    ],
                    tokenize=False,
                    add_generation_prompt=False,
                )
                for s in samples
            ]
            encoded = self.processor(text=texts, images=pictures, padding=True, return_tensors="pt")
        input_ids, attention = encoded["input_ids"], encoded["attention_mask"]
        labels = input_ids.clone()
        if self.family != "llava":
            header = self.tokenizer.encode(f"{IM_START}assistant\n", add_special_tokens=False)
            for row, ids in enumerate(input_ids.tolist()):
                starts = [j for j in range(len(ids) - len(header) + 1) if ids[j : j + len(header)] == header]
                labels[row, : starts[0] + len(header) if starts else len(ids)] = IGNORE
        labels[input_ids == self.pad_id] = IGNORE
        vision = input_ids == self.image_token_id
        answer_mask = torch.zeros_like(attention, dtype=torch.bool)
        answer_mask[:, :-1] = labels[:, 1:] != IGNORE
        return Batch(
            sample_ids=[s.id for s in samples],
            inputs=dict(encoded),
            labels=labels,
            answer_mask=answer_mask,
            vision_mask=vision,
            text_mask=attention.bool() & ~vision,
        )

    def limit_pixels(self, min_pixels: int | None, max_pixels: int | None) -> None:
        """The Qwen image processors resize every image to between ``min_pixels`` and ``max_pixels`` pixels (a
        full MIMIC-CXR radiograph would otherwise become thousands of vision tokens); saved with the model."""
        if self.family == "llava":
            super().limit_pixels(min_pixels, max_pixels)
        processor = self.processor.image_processor
        floor = (processor.patch_size * processor.merge_size) ** 2
        for flag, value in (("--min-pixels", min_pixels), ("--max-pixels", max_pixels)):
            if value is not None:
                check_integer(flag, value, floor, MAX_PIXELS, f" (one {int(floor**0.5)}-pixel square at least)")
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise MedunlearnError(
                f"--min-pixels {min_pixels} is above --max-pixels {max_pixels}; give a minimum below the maximum."
            )
        # one bound given: the other follows it where the processor's own would cross it
        high = max_pixels if max_pixels is not None else max(processor.size.longest_edge, min_pixels or 0)
        low = min_pixels if min_pixels is not None else min(processor.size.shortest_edge, high)
        processor.size = SizeDict(shortest_edge=low, longest_edge=high)
        self.card[IMAGE_BUDGET_KEY] = ImageBudget(low, high).to_json()  # saved with the model, applied by every load
        self._image_cache.clear()  # images processed under the old bounds, and the lengths they gave
        self._prompt_cache.clear()
        self._limits = None

    def pixel_bounds(self) -> ImageBudget | None:
        if self.family == "llava":
            return None
        size = self.processor.image_processor.size
        return ImageBudget(int(size.shortest_edge), int(size.longest_edge))

    def with_image_noise(self, batch: Batch, sigma: float, generator: torch.Generator) -> Batch:
        """Noise in pixel units: undo the processor's normalisation, add N(0, σ²), clip to [0, 1], normalise again."""
        processor = self.processor.image_processor
        pixels = batch.inputs["pixel_values"]
        mean = torch.tensor(processor.image_mean, dtype=pixels.dtype)
        std = torch.tensor(processor.image_std, dtype=pixels.dtype)
        shape = (1, len(mean), 1) if pixels.dim() == 2 else (1, len(mean), 1, 1)
        shaped = pixels.reshape(pixels.shape[0], len(mean), -1) if pixels.dim() == 2 else pixels
        raw = shaped * std.view(shape) + mean.view(shape)
        noisy = (raw + sigma * torch.randn(raw.shape, generator=generator, dtype=raw.dtype)).clamp(0.0, 1.0)
        normalised = ((noisy - mean.view(shape)) / std.view(shape)).reshape(pixels.shape)
        return dataclasses.replace(batch, inputs={**batch.inputs, "pixel_values": normalised})

    # -- forward --------------------------------------------------------------------------
    def _on_device(self, batch: Batch) -> tuple[Batch, dict[str, torch.Tensor]]:
        """The batch on the model's device, and network inputs with pixels in the model's dtype."""
        batch = batch.to(self.device)
        inputs = dict(batch.inputs)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.network.dtype)
        return batch, inputs

    def _base(self) -> nn.Module:
        return _language_base(self.network)

    def _answer_logits(self, batch: Batch) -> tuple[Batch, torch.Tensor]:
        """Logits at answer positions only: the LM head runs on ~1/5 of the positions."""
        batch, inputs = self._on_device(batch)
        return batch, self.through(_answer_logits_pass, inputs, batch.answer_mask)

    def _token_nll(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The NLL of every answer token, flat in row order, and how many answer tokens each row has."""
        batch, logits = self._answer_logits(batch)
        targets = batch.labels[:, 1:][batch.answer_mask[:, :-1]]
        return F.cross_entropy(logits, targets, reduction="none"), batch.answer_mask.sum(1)

    def _summed_nll(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's answer NLL summed over its tokens, and its token count."""
        token_nll, counts = self._token_nll(batch)
        rows = torch.repeat_interleave(torch.arange(len(counts), device=token_nll.device), counts)
        return torch.zeros(len(counts), device=token_nll.device).index_add(0, rows, token_nll), counts

    def sample_losses(self, batch: Batch) -> torch.Tensor:
        totals, counts = self._summed_nll(batch)
        return totals / counts.clamp(min=1)

    def sequence_losses(self, batch: Batch) -> torch.Tensor:
        return self._summed_nll(batch)[0]

    def logits(self, batch: Batch) -> torch.Tensor:
        return self._answer_logits(batch)[1]

    def answer_targets(self, batch: Batch) -> torch.Tensor:
        labels, mask = batch.labels.to(self.device), batch.answer_mask.to(self.device)
        return labels[:, 1:][mask[:, :-1]]

    def token_losses(self, batch: Batch) -> list[torch.Tensor]:
        token_nll, counts = self._token_nll(batch)
        return list(torch.split(token_nll, counts.tolist()))

    def token_scores(self, batch: Batch) -> list[torch.Tensor]:
        batch, logits = self._answer_logits(batch)
        targets = batch.labels[:, 1:][batch.answer_mask[:, :-1]]
        scores = torch.stack(
            [F.cross_entropy(logits, targets, reduction="none"), calibrated_log_probs(logits, targets)], 1
        )
        return list(torch.split(scores, batch.answer_mask.sum(1).tolist()))

    def embed(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, inputs = self._on_device(batch)  # no LM head: embeddings need only hidden states
        first, last = self.through(_hidden_pass, inputs)
        first, last = first.float(), last.float()
        image = _masked_mean(first, batch.vision_mask)  # projector output placed at the vision positions
        text = _masked_mean(last, batch.text_mask)
        joint = _masked_mean(last, batch.inputs["attention_mask"].bool())
        return image, text, joint

    def image_embeddings(self, image_ids: Sequence[str]) -> torch.Tensor:
        """The projector's output for each image, averaged over its vision tokens: ``[B, hidden]``."""
        inputs = {key: value.to(self.device) for key, value in self._pixels(image_ids).items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.network.dtype)
        config = self.network.config
        if self.family == "llava":
            inputs.update(
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
            )
        features = self._base().model.get_image_features(**inputs).pooler_output
        return torch.stack([f.float().mean(0) for f in features])

    def vision_parameters(self, *, with_projector: bool = True) -> list[nn.Parameter]:
        tower = self._vision_tower()
        projector = self._base().get_submodule(self._family.projector)
        kept = [p for p in tower.parameters()]
        if self.family == "llava" and with_projector:
            kept += list(projector.parameters())
        elif self.family != "llava" and not with_projector:  # Qwen's merger lives inside the tower
            inside = {id(p) for p in projector.parameters()}
            kept = [p for p in kept if id(p) not in inside]
        return kept

    def lora_targets(self, parts: Sequence[str]) -> list[str]:
        """The linears of the asked parts, by module name: ``language`` (every projection of the language model's
        decoder layers), ``projector`` (the vision–language projector) and ``vision`` (the image tower without it)."""
        tower = self._vision_tower()
        projector = self._base().get_submodule(self._family.projector)
        regions = {
            "language": {id(m) for m in _language_layers(self._base()).modules()},
            "projector": {id(m) for m in projector.modules()},
            "vision": {id(m) for m in tower.modules()} - {id(m) for m in projector.modules()},
        }
        wanted = set().union(*(regions[part] for part in parts))
        # named as in the transformers model; under an adapter already, its wrapped layers by their own name
        names = [name for name, m in self._base().named_modules() if isinstance(m, nn.Linear) and id(m) in wanted]
        return list(dict.fromkeys(n.removesuffix(".base_layer") for n in names if ".lora_" not in n))

    def _vision_tower(self) -> nn.Module:
        base = self._base().model
        return base.visual if hasattr(base, "visual") else base.vision_tower

    def editable_linears(self) -> dict[str, EditableLinear]:
        layers = _language_layers(self._base())
        out: dict[str, EditableLinear] = {}
        for index, layer in enumerate(layers):
            for name, module in layer.mlp.named_children():
                if isinstance(module, nn.Linear):
                    out[f"language.{index}.mlp.{name}"] = EditableLinear(module, "tokens")
        projector = self._base().get_submodule(self._family.projector)
        for name, module in projector.named_modules():
            if isinstance(module, nn.Linear):
                out[f"projector.{name}"] = EditableLinear(module, "vision")
        return out

    def _answer_limits(self) -> dict[str, int]:
        """Per fact, what a greedy answer may take (the attached dataset's longest answer + a margin; cached)."""
        if self._limits is None:
            self._limits = answer_limits(self.tokenizer, self.dataset.samples if self.dataset is not None else ())
        return self._limits

    def _greedy(self, max_new_tokens: int) -> GenerationConfig:
        return _greedy_config(max_new_tokens, self.eos_id, self.pad_id)

    @torch.no_grad()
    def answer(
        self, samples: Sequence[Sample], *, batch_size: int | None = None, max_new_tokens: int | None = None
    ) -> list[str]:
        """Greedy answers, each at most its fact's limit (``models/answer_length.py``); questions of similar
        limits are decoded together."""
        was_training = self.network.training
        self.network.eval()
        fallback = int(self.card.get("max_new_tokens", 96))
        limits = self._answer_limits()
        limit_of = [max_new_tokens or limits.get(answer_kind(s), fallback) for s in samples]
        order = sorted(
            range(len(samples)), key=lambda i: (limit_of[i], samples[i].task.value, len(samples[i].question))
        )
        answers: list[str] = [""] * len(samples)
        batch_size = batch_size or self.decode_batch
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch, inputs = self._on_device(self.batch([samples[i] for i in rows], with_answer=False))
            limits = torch.tensor([limit_of[i] for i in rows], device=self.device)
            greedy = self._greedy(int(limits.max()))
            base = _language_base(self.network)
            saved, base.generation_config = base.generation_config, greedy  # the checkpoint's own settings merge
            try:  # into a given config where it leaves a value unset: with it swapped out, nothing does
                generated = self.network.generate(
                    **inputs,
                    generation_config=greedy,
                    stopping_criteria=StoppingCriteriaList([RowLimits(inputs["input_ids"].shape[1], limits)]),
                )
            finally:
                base.generation_config = saved
            new = generated[:, batch.inputs["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for i, text in zip(rows, texts, strict=True):
                answers[i] = text.strip()
        self.network.train(was_training)
        return answers


def _greedy_config(max_new_tokens: int, eos_id: int, pad_id: int) -> GenerationConfig:
    """Plain greedy decoding, its knobs at their neutral values. The model's own ``generation_config`` is swapped for
    it while decoding (``answer``), so a checkpoint's ``generation_config.json`` (a repetition penalty, suppressed
    tokens, a minimum length) never applies."""
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


def _language_base(network: nn.Module) -> nn.Module:
    """The transformers model (under LoRA, the one peft wraps)."""
    return network.get_base_model() if hasattr(network, "get_base_model") else network


def _answer_logits_pass(network: nn.Module, inputs: dict[str, torch.Tensor], answer_mask: torch.Tensor) -> torch.Tensor:
    base = _language_base(network)
    hidden = base.model(**inputs, use_cache=False).last_hidden_state
    return base.lm_head(hidden[answer_mask]).float()


def _hidden_pass(network: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first hidden states (the projector's output at the vision positions) and the last."""
    out = _language_base(network).model(**inputs, use_cache=False, output_hidden_states=True)
    return out.hidden_states[0], out.last_hidden_state


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _language_layers(network: nn.Module) -> nn.ModuleList:
    for path in ("model.language_model.layers", "language_model.model.layers", "model.layers"):
        try:
            return network.get_submodule(path)  # type: ignore[return-value]
        except AttributeError:
            continue
    raise MedunlearnError(
        f"cannot find the language layers of {type(network).__name__}; this architecture is not supported."
    )
