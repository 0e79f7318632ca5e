"""A byte-level BPE tokenizer trained offline on the benchmark corpus (tokenizers library).

Digits are split one by one so that record numbers, accession numbers and dates are
spelled out digit by digit instead of being frozen into arbitrary merges. The chat
template mirrors Qwen's (``<|im_start|>role ... <|im_end|>``), so tiny and real models go
through the same prompt code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.hierarchy import Level

PAD = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
LLAVA_IMAGE = "<image>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD, LLAVA_IMAGE)

#: Qwen-style chat template; the image placeholder depends on the family
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ image_placeholder }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_IMAGE_PLACEHOLDER = VISION_START + IMAGE_PAD + VISION_END
LLAVA_IMAGE_PLACEHOLDER = LLAVA_IMAGE + "\n"


def corpus(dataset: HospitalDataset) -> Iterable[str]:
    """The text of a dataset a tokenizer may learn from: questions, answers (options are in the questions) and
    node facts, with every person's name taken out.

    A tokenizer is saved with every model; trained on names it would keep the hospital's
    patients as vocabulary, the forgotten ones and the oracle's too. Without them a name is
    spelled in pieces like any unseen word (digits are split one by one anyway).
    """
    people = [n.attributes.get("name") for n in dataset.hospital.nodes(Level.PATIENT, holdout=None)]
    names = sorted({part for name in people if isinstance(name, str) for part in name.split()}, key=len, reverse=True)
    strip = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b") if names else None
    texts = [t for s in dataset.samples for t in (s.question, s.answer)]
    texts += [value for node in dataset.hospital for value in node.attributes.values() if isinstance(value, str)]
    for text in texts:
        yield strip.sub(" ", text) if strip is not None else text


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 2048, image_placeholder: str = QWEN_IMAGE_PLACEHOLDER
) -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer on ``texts`` and wrap it for transformers."""
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    model.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (IM_END, PAD)],
        padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE.replace("{{ image_placeholder }}", image_placeholder)
    return tokenizer
