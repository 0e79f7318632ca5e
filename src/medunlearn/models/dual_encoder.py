"""Dual-encoder image + report classifier (the Forget-MI setting): edema severity 0–3.

* image encoder: a small residual CNN (pure torch) → linear projection;
* text encoder: a BERT-style model from transformers (tiny from a config with a
  word-level tokenizer trained offline on the corpus, or any local BERT folder such as a
  clinical BERT) → [CLS] → linear projection;
* fusion: the learned gate ``g = σ(W [i; t] + b)``, ``joint = g ⊙ i + (1 − g) ⊙ t``;
* heads: image, text and joint logits; loss = CE(image) + CE(text) + CE(joint) + a
  pairwise image–text ranking loss (hinge on cosine similarities, margin 0.2).

Samples are the edema-severity questions of a dataset (``fact == "label.edema"``); the
text input is the study's report (its sections in order). ``answer`` returns the label
text of the joint head's prediction; ``sample_losses`` its cross-entropy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tokenizers import (
    Tokenizer,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from torch import nn
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import SECTION_NAMES, Level
from medunlearn.data.questions import LABEL_FACTS
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError
from medunlearn.models.base import (
    Batch,
    EditableLinear,
    MultimodalModel,
    calibrated_log_probs,
)
from medunlearn.models.card import read_model_card
from medunlearn.models.tiny import image_side
from medunlearn.models.tokenizer import corpus

LABELS: tuple[str, ...] = LABEL_FACTS[0].choices  # none, mild, moderate, severe
TARGET_FACT = "label.edema"


class DualEncoderConfig(PretrainedConfig):
    model_type = "medunlearn_dual_encoder"

    def __init__(
        self,
        image_size: int = 112,
        cnn_widths: tuple[int, ...] = (16, 32, 64),
        embed_dim: int = 128,
        text_config: dict[str, Any] | None = None,
        labels: tuple[str, ...] = LABELS,
        max_text_tokens: int = 128,
        ranking_margin: float = 0.2,
        **kwargs: Any,
    ) -> None:
        self.image_size = image_size
        self.cnn_widths = list(cnn_widths)
        self.embed_dim = embed_dim
        self.text_config = text_config or {}
        self.labels = list(labels)
        self.max_text_tokens = max_text_tokens
        self.ranking_margin = ranking_margin
        super().__init__(**kwargs)


class ResidualBlock(nn.Module):
    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width_in, width_out, 3, stride=2, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(width_out)
        self.conv2 = nn.Conv2d(width_out, width_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width_out)
        self.skip = nn.Sequential(nn.Conv2d(width_in, width_out, 1, stride=2, bias=False), nn.BatchNorm2d(width_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.skip(x))


class ImageEncoder(nn.Module):
    def __init__(self, widths: Sequence[int], embed_dim: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        self.blocks = nn.Sequential(
            *(ResidualBlock(a, b) for a, b in zip([widths[0], *widths[:-1]], widths, strict=True))
        )
        self.projection = nn.Linear(widths[-1], embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(pixels)).mean(dim=(2, 3))
        return self.projection(features)


class DualEncoderNetwork(PreTrainedModel):
    config_class = DualEncoderConfig
    base_model_prefix = "dual_encoder"
    main_input_name = "pixel_values"

    def __init__(self, config: DualEncoderConfig) -> None:
        super().__init__(config)
        self.image_encoder = ImageEncoder(config.cnn_widths, config.embed_dim)
        self.text_encoder = BertModel(BertConfig(**config.text_config), add_pooling_layer=False)
        self.text_projection = nn.Linear(self.text_encoder.config.hidden_size, config.embed_dim)
        self.fusion_gate = nn.Linear(2 * config.embed_dim, config.embed_dim)
        n = len(config.labels)
        self.image_head = nn.Linear(config.embed_dim, n)
        self.text_head = nn.Linear(config.embed_dim, n)
        self.joint_head = nn.Linear(config.embed_dim, n)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def fuse(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The learned gated fusion G (Forget-MI uses the model's own, never a fresh one)."""
        gate = torch.sigmoid(self.fusion_gate(torch.cat([image, text], dim=-1)))
        return gate * image + (1 - gate) * text

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any
    ) -> dict[str, torch.Tensor]:
        image = self.image_encoder(pixel_values)
        text_hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        text = self.text_projection(text_hidden[:, 0])
        joint = self.fuse(image, text)
        return {
            "image": image,
            "text": text,
            "joint": joint,
            "image_logits": self.image_head(image),
            "text_logits": self.text_head(text),
            "joint_logits": self.joint_head(joint),
        }


def train_word_tokenizer(texts: Sequence[str], vocab_size: int = 4000) -> PreTrainedTokenizerFast:
    """A BERT-style word-level tokenizer learnt from ``texts`` (lower-cased, digits one by one).

    Ids are assigned in sorted order, so the same texts always give the same tokenizer
    (the subword trainers of the tokenizers library break frequency ties differently
    from run to run).
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    def blank(vocab: dict[str, int] | None) -> Tokenizer:
        tok = Tokenizer(
            models.WordLevel(vocab=vocab, unk_token="[UNK]") if vocab else models.WordLevel(unk_token="[UNK]")
        )
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Digits(individual_digits=True)]
        )
        return tok

    counted = blank(None)
    counted.train_from_iterator(
        texts, trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    )
    ordered = specials + sorted(t for t in counted.get_vocab() if t not in specials)
    tokenizer = blank({t: i for i, t in enumerate(ordered)})
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


TINY_BERT = {
    "hidden_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 192,
    "max_position_embeddings": 256,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def build_scratch_dual_encoder(
    dataset: HospitalDataset, *, seed: int, text_encoder: str | None = None
) -> DualEncoderModel:
    """``dual-encoder@scratch``: random weights and a word tokenizer trained on the hospital itself (no base)."""
    return build_dual_encoder(list(corpus(dataset)), side=image_side(dataset), seed=seed, text_encoder=text_encoder)


def build_dual_encoder(
    texts: Sequence[str], *, side: int, seed: int, text_encoder: str | None = None
) -> DualEncoderModel:
    """A fresh classifier for ``side``-px images whose word tokenizer is learnt from ``texts``;
    with ``text_encoder`` a local BERT folder supplies the text tower's weights and tokenizer."""
    torch.manual_seed(seed)
    if text_encoder is not None:
        folder = Path(text_encoder)
        if not (folder / "config.json").is_file():
            raise MedunlearnError(f"--text-encoder {folder} has no config.json; give a local BERT model folder.")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        pretrained = AutoModel.from_pretrained(folder)
        if not isinstance(pretrained, BertModel):
            raise MedunlearnError(
                f"--text-encoder {folder} is a {type(pretrained).__name__}; the dual encoder takes a BERT model."
            )
        config = DualEncoderConfig(image_size=side, text_config=pretrained.config.to_dict())
        network = DualEncoderNetwork(config)
        network.text_encoder.load_state_dict(pretrained.state_dict(), strict=False)
    else:
        tokenizer = train_word_tokenizer(list(texts))
        config = DualEncoderConfig(
            image_size=side,
            text_config={**TINY_BERT, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id},
        )
        network = DualEncoderNetwork(config)
    return DualEncoderModel(network, tokenizer, {"seed": seed, "text_encoder": text_encoder})


class DualEncoderModel(MultimodalModel):
    family = "dual_encoder"
    reads_questions = False  # it reads the study's report, whatever the question
    heads = ("joint", "image")

    def __init__(self, network: DualEncoderNetwork, tokenizer: Any, card: dict[str, Any]) -> None:
        self.network = network
        self.tokenizer = self.preprocessor = tokenizer
        self.card = {"family": self.family, **card}
        self.dataset = None
        self._pixels: dict[str, torch.Tensor] = {}

    def attach(self, dataset: HospitalDataset) -> None:
        if dataset is not self.dataset:
            self._pixels.clear()
        self.dataset = dataset

    @property
    def classes(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.network.config.labels)

    def report(self, study_id: str) -> str:
        """The text input: the study's report sections in order (the study id when it has none)."""
        hospital = self._dataset().hospital
        sections = {
            n.attributes.get("name"): n.attributes.get("text", "")
            for n in hospital.children(study_id)
            if n.level is Level.SECTION
        }
        text = " ".join(f"{name}: {sections[name]}" for name in SECTION_NAMES if sections.get(name))
        return text or study_id

    def _dataset(self) -> HospitalDataset:
        if self.dataset is None:
            raise MedunlearnError("the model has no dataset attached; call model.attach(dataset) first.")
        return self.dataset

    def pixels(self, image_id: str) -> torch.Tensor:
        cached = self._pixels.get(image_id)
        if cached is None:
            side = self.network.config.image_size
            picture = self._dataset().images.decode(image_id).convert("L").resize((side, side), Image.BILINEAR)
            cached = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).unsqueeze(0)
            self._pixels[image_id] = cached
        return cached

    def usable(self, samples: Iterable[Sample]) -> list[Sample]:
        return edema_samples(list(samples))

    def label_index(self, sample: Sample) -> int:
        if sample.fact != TARGET_FACT or sample.answer not in self.classes:
            raise MedunlearnError(
                f"sample {sample.id!r} asks {sample.fact or 'an unnamed fact'!r}; the dual encoder classifies edema "
                "severity "
                f"({TARGET_FACT} questions) only."
            )
        return self.classes.index(sample.answer)

    def model_text(self, sample: Sample) -> str:
        return self.report(sample.image_node)

    def batch(
        self,
        samples: Sequence[Sample],
        *,
        with_answer: bool = True,
        texts: Sequence[str] | None = None,
        pixels: torch.Tensor | None = None,
    ) -> Batch:
        """Inputs for ``samples``; ``texts``/``pixels`` replace the report and image (noisy copies)."""
        texts = list(texts) if texts is not None else [self.model_text(s) for s in samples]
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.network.config.max_text_tokens, return_tensors="pt"
        )
        stacked = pixels if pixels is not None else torch.stack([self.pixels(s.image) for s in samples])
        labels = torch.tensor([self.label_index(s) for s in samples], dtype=torch.long)
        ones = torch.ones((len(samples), 1), dtype=torch.bool)
        return Batch(
            sample_ids=[s.id for s in samples],
            inputs={
                "pixel_values": stacked,
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
            },
            labels=labels,
            answer_mask=ones,
            vision_mask=ones,
            text_mask=encoded["attention_mask"].bool(),
        )

    def with_image_noise(self, batch: Batch, sigma: float, generator: torch.Generator) -> Batch:
        pixels = batch.inputs["pixel_values"]
        noisy = (pixels + sigma * torch.randn(pixels.shape, generator=generator, dtype=pixels.dtype)).clamp(0.0, 1.0)
        return dataclasses.replace(batch, inputs={**batch.inputs, "pixel_values": noisy})

    def outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        batch = batch.to(self.device)
        return self.through(_network_pass, batch.inputs)

    def sample_losses(self, batch: Batch) -> torch.Tensor:
        out = self.outputs(batch)
        return F.cross_entropy(out["joint_logits"], batch.labels.to(self.device), reduction="none")

    def training_loss(self, batch: Batch) -> torch.Tensor:
        out = self.outputs(batch)
        labels = batch.labels.to(self.device)
        ce = sum(F.cross_entropy(out[k], labels) for k in ("image_logits", "text_logits", "joint_logits"))
        return ce + ranking_loss(out["image"], out["text"], self.network.config.ranking_margin)

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.outputs(batch)["joint_logits"]

    def answer_targets(self, batch: Batch) -> torch.Tensor:
        return batch.labels.to(self.device)  # one answer position per row: its label

    def token_losses(self, batch: Batch) -> list[torch.Tensor]:
        return list(self.sample_losses(batch).float().unsqueeze(1))  # one 'token' per row: its label

    def token_scores(self, batch: Batch) -> list[torch.Tensor]:
        logits, labels = self.outputs(batch)["joint_logits"].float(), batch.labels.to(self.device)
        scores = torch.stack(
            [F.cross_entropy(logits, labels, reduction="none"), calibrated_log_probs(logits, labels)], 1
        )
        return list(scores.unsqueeze(1))  # one 'token' per row: its label

    def embed(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.outputs(batch)
        return out["image"], out["text"], out["joint"]

    def image_embeddings(self, image_ids: Sequence[str]) -> torch.Tensor:
        return self.network.image_encoder(torch.stack([self.pixels(i) for i in image_ids]).to(self.device))

    @torch.no_grad()
    def start_image_head(self, head: nn.Linear) -> None:
        """Set the image head's weights to a trained linear head of the same shape (the base's vision warm-up)."""
        self.network.image_head.load_state_dict(head.state_dict())

    def vision_parameters(self, *, with_projector: bool = True) -> list[nn.Parameter]:
        encoder = self.network.image_encoder
        kept = list(encoder.stem.parameters()) + list(encoder.blocks.parameters())
        return kept + list(encoder.projection.parameters()) if with_projector else kept

    def editable_linears(self) -> dict[str, EditableLinear]:
        out = {
            "image_encoder.projection": EditableLinear(self.network.image_encoder.projection, "vision"),
            "text_projection": EditableLinear(self.network.text_projection, "tokens"),
            "fusion_gate": EditableLinear(self.network.fusion_gate, "tokens"),
        }
        for index, layer in enumerate(self.network.text_encoder.encoder.layer):
            out[f"text_encoder.{index}.intermediate"] = EditableLinear(layer.intermediate.dense, "tokens")
            out[f"text_encoder.{index}.output"] = EditableLinear(layer.output.dense, "tokens")
        return out

    @torch.no_grad()
    def class_probabilities(self, samples: Sequence[Sample], *, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Class probabilities of every head from one pass: ``joint`` (what the model answers) and ``image``
        (pixels alone, what Forget-MI scores)."""
        chunks: dict[str, list[np.ndarray]] = {head: [] for head in self.heads}
        with self.eval_mode():
            for i in range(0, len(samples), batch_size):
                out = self.outputs(self.batch(samples[i : i + batch_size]))
                for head in self.heads:
                    chunks[head].append(torch.softmax(out[f"{head}_logits"].float(), -1).cpu().numpy())
        return {
            head: np.concatenate(parts) if parts else np.zeros((0, len(self.classes))) for head, parts in chunks.items()
        }

    def answer(
        self, samples: Sequence[Sample], *, batch_size: int | None = None, max_new_tokens: int | None = None
    ) -> list[str]:
        joint = self.class_probabilities(samples, batch_size=batch_size or self.decode_batch)[self.heads[0]]
        return [self.classes[i] for i in joint.argmax(1)]


def _network_pass(network: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return network(**inputs)


def ranking_loss(image: torch.Tensor, text: torch.Tensor, margin: float) -> torch.Tensor:
    """Pairwise hinge on cosine similarity: each image closer to its own report than to others (and back)."""
    if len(image) < 2:
        return image.sum() * 0.0
    sims = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    positive = sims.diag().unsqueeze(1)
    off = ~torch.eye(len(sims), dtype=torch.bool, device=sims.device)
    image_to_text = F.relu(margin - positive + sims)[off].mean()
    text_to_image = F.relu(margin - positive.T + sims)[off].mean()
    return image_to_text + text_to_image


def load_dual_encoder(folder: Path) -> DualEncoderModel:
    network = DualEncoderNetwork.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    card = {k: v for k, v in read_model_card(folder).items() if k != "family"}
    return DualEncoderModel(network, tokenizer, card)


def edema_samples(samples: Sequence[Sample]) -> list[Sample]:
    """The samples a dual encoder can classify: original edema-severity multiple-choice questions."""
    return [
        s for s in samples if s.fact == TARGET_FACT and s.task.value == "classification" and s.paraphrase_of is None
    ]
