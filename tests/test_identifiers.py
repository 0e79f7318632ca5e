"""No output names a person: not the logs, the metrics, the cells, the report, the audit record or a model folder."""

from __future__ import annotations

import json
import re

import pytest

from medunlearn.models.dual_encoder import build_scratch_dual_encoder
from medunlearn.models.tiny import PRESETS, build_scratch
from medunlearn.models.tokenizer import corpus


def _word(text: str) -> str:
    return text.lstrip("Ġ▁#").lower()


@pytest.mark.parametrize("preset", [*(n for n, p in PRESETS.items() if p.pretrained), "dual-encoder"])
def test_no_tokenizer_learns_a_name_of_the_hospital(small_dataset, preset):
    model = (
        build_scratch_dual_encoder(small_dataset, seed=0)
        if preset == "dual-encoder"
        else build_scratch(preset, small_dataset, seed=0)
    )
    vocabulary = {_word(token) for token in model.tokenizer.get_vocab()}
    identities = small_dataset.identity_strings()
    assert len(identities) > 50
    tokens = sorted(s for s in identities if s.lower() in vocabulary)
    # a short name can also be a piece of an ordinary word the tokenizer learnt ("Lea" of "leads"): that token says
    # nothing of a person
    words = {word.lower() for text in corpus(small_dataset) for word in re.findall(r"[A-Za-z]+", text)}
    assert [s for s in tokens if not any(s.lower() in word and s.lower() != word for word in words)] == []


def test_no_output_of_a_bench_an_unlearning_and_an_audit_names_a_forgotten_person(
    run_cli, small_folder, small_dataset, tmp_path
):
    outputs, printed = tmp_path / "outputs", []
    code, out, err = run_cli(
        "bench",
        "--data",
        small_folder,
        "--model",
        "dual-encoder@scratch",
        "--methods",
        "chip,grad_diff",
        "--forget-fraction",
        "0.2",
        "--epochs",
        "1",
        "--limit",
        "10",
        "--out",
        outputs / "bench",
    )
    assert code == 0, err
    printed += [out, err]
    metrics = json.loads((outputs / "bench" / "metrics.json").read_text())
    targets = sorted({t for row in metrics["results"] for t in row["request"]["targets"]})
    vanilla = outputs / "bench" / "models" / "vanilla"
    for args in (
        ["unlearn", "--model", vanilla, "--method", "chip", "--out", outputs / "u"],
        ["eval", "--model", outputs / "u", "--out", outputs / "e"],
        ["audit", "--model", outputs / "u", "--out", outputs / "a", "--limit", "10"],
    ):
        request = [a for t in targets for a in ("--target", t)]
        code, out, err = (
            run_cli(*args, "--data", small_folder, "--level", "patient", *request)
            if args[0] != "audit"
            else run_cli(*args, "--data", small_folder)
        )
        assert code == 0, err
        printed += [out, err]

    identities = small_dataset.identity_strings(targets)
    assert len(identities) > 10
    pattern = re.compile(
        "|".join(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])" for s in sorted(identities, key=len, reverse=True))
    )
    files = [p for p in outputs.rglob("*") if p.is_file()]
    assert len(files) > 30 and any(p.name == "tokenizer.json" or p.name == "vocab.txt" for p in files)
    found = {}
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="ignore")
        if path.suffix in (".safetensors", ".png", ".pt"):  # binary: only strings too long to occur by chance
            hits = [s for s in identities if len(s) >= 6 and s in text]
        else:
            hits = pattern.findall(text)
        if hits:
            found[str(path.relative_to(outputs))] = sorted(set(hits))[:5]
    found.update(
        {
            f"console {i}": sorted(set(pattern.findall(text)))[:5]
            for i, text in enumerate(printed)
            if pattern.search(text)
        }
    )
    assert found == {}
