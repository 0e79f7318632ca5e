"""Hierarchical context: the fine-tune shows a question only its fact's strict ancestors, so a retrain oracle never
reads a deleted node, and an epoch's draws are fixed by the recipe's seed and the epoch."""

from __future__ import annotations

import numpy as np
import pytest

from medunlearn.config import TrainConfig
from medunlearn.data.context import STEP_LEVELS, STEPS, context, contextualised, leaks, training_steps
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.data.splits import make_split
from medunlearn.errors import MedunlearnError
from medunlearn.models.model_name import ModelName

REQUESTS = {
    Level.INSTITUTION: "inst-1",
    Level.PATIENT: "inst-1.pat-02",
    Level.STUDY: "inst-2.pat-01.st-2",
    Level.SECTION: "inst-1.pat-03.st-1.FINDINGS",
}


def test_a_training_question_is_told_only_the_nodes_above_its_fact(small_dataset):
    hospital = small_dataset.hospital
    told = {}
    for sample in small_dataset.training_samples():
        steps = training_steps(hospital, sample)
        assert steps == list(STEPS[: len(steps)]), "cumulative, from none"
        for step in steps[1:]:
            node = hospital.ancestor_at(sample.image_node, STEP_LEVELS[step])
            assert node.id != sample.fact_node and hospital.is_in_subtree(sample.fact_node, node.id), (sample.id, step)
            assert not leaks(hospital, sample, step), (sample.id, step)
        told[sample.fact_level] = max(told.get(sample.fact_level, 0), len(steps) - 1)
    # a section's facts may hear of its institution, patient and study; a patient's of its institution alone
    assert told == {Level.SECTION: 3, Level.STUDY: 2, Level.PATIENT: 1, Level.INSTITUTION: 0}


@pytest.mark.parametrize("level", list(REQUESTS))
def test_no_retained_question_is_ever_told_a_node_its_request_deletes(small_dataset, level):
    hospital = small_dataset.hospital
    request = DeletionRequest(level, (REQUESTS[level],))
    split = make_split(small_dataset, request)
    for sample in small_dataset.samples.select(split.retain):
        for step in training_steps(hospital, sample)[1:]:
            node = hospital.ancestor_at(sample.image_node, STEP_LEVELS[step])
            assert not hospital.is_in_subtree(node.id, REQUESTS[level]), (sample.id, step)


def test_an_epochs_draws_follow_the_share_and_the_seed(small_dataset):
    hospital = small_dataset.hospital
    samples = list(small_dataset.training_samples())
    steps = [training_steps(hospital, s)[1:] for s in samples]
    told = [i for i, offered in enumerate(steps) if offered]

    def epoch(share, seed):
        return contextualised(hospital, samples, steps, share, np.random.default_rng([seed, 0, 11]))

    assert [s.question for s in epoch(0.0, 0)] == [s.question for s in samples]
    half, again, other = epoch(0.5, 0), epoch(0.5, 0), epoch(0.5, 1)
    assert [s.question for s in half] == [s.question for s in again]
    assert [s.question for s in half] != [s.question for s in other]
    changed = [i for i, (a, b) in enumerate(zip(samples, half, strict=True)) if a.question != b.question]
    assert set(changed) <= set(told)
    assert 0.4 < len(changed) / len(told) < 0.6  # a binomial share of several hundred draws at 0.5
    for i in changed:  # the context of one of its steps, then the question as it was
        assert any(
            half[i].question == f"{context(hospital, samples[i], step)} {samples[i].question}" for step in steps[i]
        )
        assert half[i].answer == samples[i].answer and half[i].id == samples[i].id
    every = epoch(1.0, 0)  # a share of 1 tells every question that has a step, and only those
    assert [i for i, (a, b) in enumerate(zip(samples, every, strict=True)) if a.question != b.question] == told


def test_the_share_is_a_recipe_setting_recorded_only_when_context_is_shown():
    assert ModelName.parse("tiny-qwen2-vl").training_defaults()["context_share"] == 0.5
    assert ModelName.parse("tiny-qwen2-vl@scratch").training_defaults()["context_share"] == 0.5
    assert ModelName.parse("dual-encoder").training_defaults()["context_share"] == 0.0
    shown = TrainConfig(context_share=0.5)
    assert shown.to_json()["context_share"] == 0.5
    assert TrainConfig.from_json(shown.to_json()).context_share == 0.5
    bare = TrainConfig(context_share=0.0).to_json()
    assert "context_share" not in bare  # a recipe written before the setting keeps its identity
    assert TrainConfig.from_json(bare).context_share == 0.0  # and reads as no context, not as the default's
    with pytest.raises(MedunlearnError, match="--context-share"):
        TrainConfig(context_share=1.5)
