"""The model protocol: the one seam through which methods, metrics and attacks see a model.

Both model families (the Hugging Face vision-language adapter and the dual-encoder
classifier) implement :class:`MultimodalModel`. A method or a metric never reaches into a
model's internals, nor asks which family it is: it asks for a capability, as
scikit-learn's scorers declare the ``response_method`` they need —

- :attr:`reads_questions` — the text input is the question (a VLM), not the study's report
  (the classifier); attacks that rephrase a question need it;
- :attr:`classes` and :meth:`class_probabilities` — a classifier's label set and each
  head's class probabilities (empty and unavailable for a generative model);
- :meth:`token_losses` — per answer token NLL (the membership attacks' Min-K%);
- :meth:`token_scores` — per answer token its NLL and Min-K%++'s calibrated log-probability (the attacks);
- :meth:`eval_mode` — a context that switches dropout off and restores the mode after.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medunlearn.data.dataset import HospitalDataset
from medunlearn.data.samples import Sample
from medunlearn.errors import MedunlearnError, check_integer
from medunlearn.models.card import DECODE_BATCH, LOSS_BATCH, MAX_EVAL_BATCH, MODEL_CARD
from medunlearn.models.image_budget import CARD_KEY as IMAGE_BUDGET_KEY
from medunlearn.models.image_budget import ImageBudget


@dataclass
class Batch:
    """Model inputs for a list of samples, plus what the protocol needs to know about them.

    ``inputs`` go straight to the underlying network; ``answer_mask`` marks the positions
    whose next-token prediction is an answer token (classifier: all ones, one position);
    ``vision_mask`` marks vision-token positions and ``text_mask`` real (non-padding,
    non-vision) text positions, both ``[B, T]`` booleans.
    """

    sample_ids: list[str]
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    answer_mask: torch.Tensor
    vision_mask: torch.Tensor
    text_mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str) -> Batch:
        def move(t):
            return t.to(device) if isinstance(t, torch.Tensor) else t

        return Batch(
            self.sample_ids,
            {k: move(v) for k, v in self.inputs.items()},
            move(self.labels),
            move(self.answer_mask),
            move(self.vision_mask),
            move(self.text_mask),
        )


class ForwardPasses(nn.Module):
    """A model's forward passes as one module, so that a data-parallel wrapper (DDP, FSDP) sees every one.

    ``forward(run, *args)`` is ``run(network, *args)``: an adapter's pass (its answer logits,
    its hidden states) runs inside the wrapper, whose hooks then exchange the gradients of
    every parameter the pass used (:mod:`medunlearn.distributed`).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, run, *args):  # noqa: ANN001 - any pass of the adapter
        return run(self.network, *args)


@dataclass(frozen=True)
class EditableLinear:
    """A linear layer CHIP may hook and project, with the token span to pool its output over."""

    layer: nn.Linear
    span: str  # "tokens": pool over vision and text positions of the sequence; "vision": over vision tokens only


class MultimodalModel(abc.ABC):
    """What every model offers to training, unlearning, evaluation and attacks."""

    family: str
    network: nn.Module
    card: dict[str, Any]
    dataset: HospitalDataset | None = None
    #: whether the text input is the sample's question (True) or something else the model reads, e.g. the report
    reads_questions: bool = True
    #: a classifier's label set in output order (empty: the model generates its answers)
    classes: tuple[str, ...] = ()
    #: a classifier's output heads, each in :meth:`class_probabilities` (the first is what it answers with)
    heads: tuple[str, ...] = ()
    #: the data-parallel wrapper of :meth:`forward_passes` under a launcher (None: passes run directly)
    _passes: nn.Module | None = None

    @abc.abstractmethod
    def batch(
        self, samples: Sequence[Sample], *, with_answer: bool = True, texts: Sequence[str] | None = None
    ) -> Batch:
        """Tokenise, load images, mark answer tokens and each row's vision-token span.

        ``texts`` replace each sample's text input (see :meth:`model_text`), e.g. with noisy copies.
        """

    def conversation_batch(self, samples: Sequence[Sample]) -> Batch:
        """Each sample's whole conversation, question and answer, as a chat model's own training code builds it (the
        authors' CHIP collate). A model without a prompt (the dual encoder) has no conversation: its own batch."""
        return self.batch(samples)

    @abc.abstractmethod
    def sample_losses(self, batch: Batch) -> torch.Tensor:
        """Mean negative log-likelihood of each row's answer, ``[B]`` (with gradients)."""

    def sequence_losses(self, batch: Batch) -> torch.Tensor:
        """NLL of each row's whole answer, summed over its tokens (−log π(answer)), ``[B]`` (with gradients).

        A classifier's answer is one label, so this is :meth:`sample_losses`.
        """
        return self.sample_losses(batch)

    @abc.abstractmethod
    def token_losses(self, batch: Batch) -> list[torch.Tensor]:
        """Per row, the NLL of each answer token (a classifier: one 'token', its label)."""

    @abc.abstractmethod
    def token_scores(self, batch: Batch) -> list[torch.Tensor]:
        """Per row ``[tokens, 2]``: each answer token's NLL and its log-probability calibrated by the model's own
        distribution at that position (:func:`calibrated_log_probs`; Min-K%++), from one forward pass."""

    def class_probabilities(self, samples: Sequence[Sample]) -> dict[str, np.ndarray]:
        """Per head (:attr:`heads`), the class probabilities ``[N, len(classes)]``, every head from one forward pass;
        only a classifier (non-empty :attr:`classes`) has them."""
        raise MedunlearnError(f"the {self.family} model is not a classifier; it has no class probabilities.")

    @contextmanager
    def eval_mode(self) -> Iterator[MultimodalModel]:
        """Evaluation mode (no dropout) inside the block; the previous mode is restored after it."""
        was_training = self.network.training
        self.network.train(False)
        try:
            yield self
        finally:
            self.network.train(was_training)

    def forward_passes(self) -> nn.Module:
        """The module a data-parallel wrapper wraps (:func:`medunlearn.distributed.prepare`)."""
        return ForwardPasses(self.network)

    def distribute(self, passes: nn.Module | None) -> None:
        """Run the forward passes through ``passes`` from now on.

        ``passes`` is the wrapped :meth:`forward_passes`; None: directly.
        """
        self._passes = passes

    @contextmanager
    def directly(self) -> Iterator[MultimodalModel]:
        """Forward passes on the bare network inside the block (no data-parallel wrapper, whose hooks would average
        gradients over processes); the wrapper is restored after it."""
        passes, self._passes = self._passes, None
        try:
            yield self
        finally:
            self._passes = passes

    def through(self, run, *args):  # noqa: ANN001
        """``run(network, *args)``: through the data-parallel wrapper when the model is distributed."""
        return run(self.network, *args) if self._passes is None else self._passes(run, *args)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_passes", None)  # a copy (a frozen reference, a clone) runs its passes directly
        return state

    def usable(self, samples: Iterable[Sample]) -> list[Sample]:
        """The samples this model can train and be scored on (all, unless the family is narrower)."""
        return list(samples)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """The fine-tuning objective (default: mean answer NLL)."""
        return self.sample_losses(batch).mean()

    @abc.abstractmethod
    def logits(self, batch: Batch) -> torch.Tensor:
        """Logits at answer positions, ``[N_answer_positions, V]``, rows in order."""

    @abc.abstractmethod
    def answer_targets(self, batch: Batch) -> torch.Tensor:
        """The target id of each answer position, ``[N_answer_positions]``, in the rows of :meth:`logits`."""

    @abc.abstractmethod
    def embed(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled (image, text, joint) embeddings, each ``[B, D]``."""

    @abc.abstractmethod
    def image_embeddings(self, image_ids: Sequence[str]) -> torch.Tensor:
        """The image tower's pooled output for each image, ``[B, D]`` (pretraining's vision warm-up reads labels off
        it)."""

    @abc.abstractmethod
    def vision_parameters(self, *, with_projector: bool = True) -> list[nn.Parameter]:
        """The image tower's parameters (``with_projector``: and the projection into the joint space)."""

    def freeze_vision(self) -> None:
        """Stop training the image tower (its projector keeps training)."""
        for parameter in self.vision_parameters(with_projector=False):
            parameter.requires_grad_(False)

    def lora_targets(self, parts: Sequence[str]) -> list[str]:
        """The names of the linear layers a LoRA adapter on ``parts`` (``language``, ``projector``, ``vision``) wraps;
        only the vision-language models have them."""
        raise MedunlearnError(
            f"LoRA adapts the vision-language models' linears; the {self.family} model trains every weight. Drop "
            "--lora-r for it."
        )

    @abc.abstractmethod
    def editable_linears(self) -> dict[str, EditableLinear]:
        """Named linear layers CHIP may hook and project."""

    @abc.abstractmethod
    def answer(
        self, samples: Sequence[Sample], *, batch_size: int | None = None, max_new_tokens: int | None = None
    ) -> list[str]:
        """Greedy answers (classifier: the predicted label text)."""

    #: the tokenizer or processor saved beside the weights (its save_pretrained writes its files)
    preprocessor: Any

    def save(self, folder: Path) -> None:
        """Write the model in the Hugging Face layout (config, safetensors, tokenizer/processor) plus the model card."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.compute_dtype is not None:  # trained on float32 master weights: saved in the precision it was loaded in
            self.network.to(self.compute_dtype)
        self.network.save_pretrained(folder, safe_serialization=True)
        self.preprocessor.save_pretrained(folder)
        (folder / MODEL_CARD).write_text(json.dumps(self.card, indent=2, sort_keys=True) + "\n")

    def save_adapter(self, folder: Path) -> None:
        """Write the LoRA adapter alone (peft's layout: ``adapter_config.json`` names the base folder, the adapter's
        weights in the precision they trained in), the processor and the model card: a patch on its base."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.network.save_pretrained(folder, safe_serialization=True)
        self.preprocessor.save_pretrained(folder)
        (folder / MODEL_CARD).write_text(json.dumps(self.card, indent=2, sort_keys=True) + "\n")

    @torch.no_grad()
    def merge_kept(self) -> float | None:
        """The share of the LoRA adapter's weight changes that survive being merged into weights of the precision
        they were loaded in (bf16 on a GPU: a change below half a bf16 step rounds away); None without an adapter or
        when the weights are float32 (nothing rounds away)."""
        if self.compute_dtype is None or not hasattr(self.network, "merge_and_unload"):
            return None
        kept = changed = 0
        for module in self.network.modules():
            if not (hasattr(module, "lora_A") and hasattr(module, "get_base_layer")):
                continue
            weight = module.get_base_layer().weight
            delta = sum(module.get_delta_weight(name) for name in module.active_adapters if name in module.lora_A)
            if not isinstance(delta, torch.Tensor):
                continue
            moved = delta != 0
            low = weight.to(self.compute_dtype)
            kept += int(((low.float() + delta.float()).to(self.compute_dtype) != low)[moved].sum())
            changed += int(moved.sum())
        return kept / changed if changed else None

    def shipped(self) -> MultimodalModel:
        """The model as :meth:`save` writes it, in place: any LoRA adapter folded in, the weights back in the
        precision they were loaded in (bf16 on a GPU; float32 master weights end). What the audit scores."""
        self.merged()
        if self.compute_dtype is not None:
            self.network.to(self.compute_dtype)
            self.compute_dtype = None
        return self

    def clone(self) -> MultimodalModel:
        """An independent deep copy (weights, caches) that shares the attached dataset."""
        memo = {id(self.dataset): self.dataset} if self.dataset is not None else {}
        return copy.deepcopy(self, memo)

    def model_text(self, sample: Sample) -> str:
        """The text input the model reads for a sample (VLM: the question; classifier: the report)."""
        return sample.question

    @abc.abstractmethod
    def with_image_noise(self, batch: Batch, sigma: float, generator: torch.Generator) -> Batch:
        """The batch with Gaussian noise N(0, σ²) added to its images in pixel units [0, 1], clipped to that range."""

    #: samples per generation batch (`answer`) and per scoring batch (losses, attacks): memory levers on a GPU
    decode_batch: int = DECODE_BATCH
    loss_batch: int = LOSS_BATCH

    def batch_sizes(self, decode: int | None, loss: int | None) -> MultimodalModel:
        """Set the generation and scoring batch sizes (None: keep); itself."""
        if decode is not None:
            check_integer("--decode-batch", decode, 1, MAX_EVAL_BATCH)
            self.decode_batch = decode
        if loss is not None:
            check_integer("--loss-batch", loss, 1, MAX_EVAL_BATCH)
            self.loss_batch = loss
        return self

    #: the dtype forward passes compute in under :meth:`autocast` (None: the weights' own, float32 on CPU)
    compute_dtype: torch.dtype | None = None

    def master_weights(self) -> list[nn.Parameter]:
        """Mixed precision for training: every trainable parameter held in float32 (the master copy the optimizer
        updates, and its state), forward passes in the weights' low precision (bf16 on a GPU) under
        :meth:`autocast`. A model loaded in float32 is left as it is. Returns the trainable parameters."""
        low = {p.dtype for p in self.network.parameters() if p.dtype in (torch.bfloat16, torch.float16)}
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        if low:
            self.compute_dtype = torch.bfloat16 if torch.bfloat16 in low else torch.float16
            for parameter in trainable:
                if parameter.dtype != torch.float32:
                    parameter.data = parameter.data.float()
        return trainable

    #: the image budget the model reads with and where each bound came from (:meth:`apply_image_budget`; None: the
    #: model's input has a fixed size, or the budget was never resolved)
    image_budget: dict[str, Any] | None = None

    def apply_image_budget(self, flags: ImageBudget | None = None) -> dict[str, Any] | None:
        """Apply the budget stored in the model's card, each bound given in ``flags`` overriding it; what applied
        (``image_budget``: the bounds in force and, per bound, ``flag``, ``model folder`` or the processor's own)."""
        flags = flags or ImageBudget()
        stored = ImageBudget.from_json(self.card.get(IMAGE_BUDGET_KEY))
        effective = flags.over(stored)
        if effective.given:
            self.limit_pixels(effective.min_pixels, effective.max_pixels)
        bounds = self.pixel_bounds()
        self.image_budget = None if bounds is None else {**bounds.to_json(), "from": flags.sources(stored)}
        return self.image_budget

    def pixel_bounds(self) -> ImageBudget | None:
        """The bounds the image processor resizes to (None: the model's image input has a fixed size)."""
        return None

    def limit_pixels(self, min_pixels: int | None, max_pixels: int | None) -> None:
        """Bound the pixels the image processor resizes each radiograph to (Qwen2-VL, Qwen2.5-VL); the model's
        input size is fixed otherwise, which this says in one sentence."""
        raise MedunlearnError(
            f"--min-pixels/--max-pixels bound the Qwen2-VL and Qwen2.5-VL image processors; the {self.family} "
            "model's image input has a fixed size. Drop them."
        )

    def autocast(self) -> Any:
        """Forward passes in ``compute_dtype`` (torch.autocast), or as they are when it is None."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    def merged(self) -> MultimodalModel:
        """The model with any LoRA adapters folded into its weights (itself when there are none)."""
        if hasattr(self.network, "merge_and_unload"):
            self.network = self.network.merge_and_unload()
        return self

    def attach(self, dataset: HospitalDataset) -> None:
        """Tell the model where the radiographs (and reports) of the samples it will see live."""
        self.dataset = dataset

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def train(self, mode: bool = True) -> None:
        self.network.train(mode)

    def parameters(self):
        return self.network.parameters()


def calibrated_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Min-K%++'s token score (Zhang et al., 2024): (log p(x_t) − μ_t) / σ_t, where μ_t and σ_t² are the mean and
    variance of log p over the vocabulary under the model's own distribution at position t. A memorised token is a
    local maximum of the likelihood: its score is high. ``logits`` [N, V], ``targets`` [N] → [N]."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    probs = log_probs.exp()
    mean = (probs * log_probs).sum(-1)
    variance = (probs * log_probs.square()).sum(-1) - mean.square()
    chosen = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (chosen - mean) / variance.clamp(min=1e-12).sqrt()
