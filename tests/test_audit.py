"""The audit record of a deletion: written by unlearn and audit, signed, verified, and free of identifiers."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil

import pytest

from medunlearn.audit import CHECKS, FAIL, NO_ORACLE, NOT_MEASURED, PASS, checks, hashed_targets
from medunlearn.config import TrainConfig
from medunlearn.data.dataset import SALT_FILE, audit_salt
from medunlearn.data.hierarchy import DeletionRequest, Level
from medunlearn.models.train import train

TARGET = "inst-1.pat-02"
REQUEST = ["--level", "patient", "--target", TARGET]


@pytest.fixture(scope="module")
def deletion(tmp_path_factory, small_dataset, small_folder):
    """A vanilla classifier, its oracle for one patient, a CHIP deletion (CLI) and a key pair."""
    from medunlearn.cli import main

    root = tmp_path_factory.mktemp("audit")
    recipe = TrainConfig(model="dual-encoder@scratch", epochs=2, seed=0)
    train(small_dataset, recipe, root / "vanilla")
    train(
        small_dataset,
        TrainConfig(**{**recipe.__dict__, "exclude": DeletionRequest(Level.PATIENT, (TARGET,))}),
        root / "oracle",
    )
    assert (
        main(
            [
                "unlearn",
                "--model",
                str(root / "vanilla"),
                "--data",
                str(small_folder),
                *REQUEST,
                "--method",
                "chip",
                "--out",
                str(root / "chip"),
                "--audit-limit",
                "20",
            ]
        )
        == 0
    )
    assert main(["audit-keygen", "--out", str(root / "keys")]) == 0
    return root


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unlearn_writes_a_record_about_its_weights_without_the_target(deletion, small_folder):
    record = json.loads((deletion / "chip" / "audit.json").read_text())
    assert record["_type"] == "https://in-toto.io/Statement/v1"
    assert record["subject"] == [
        {"name": "model.safetensors", "digest": {"sha256": sha256(deletion / "chip" / "model.safetensors")}}
    ]
    predicate = record["predicate"]
    assert predicate["verdict"] == NO_ORACLE and {c["verdict"] for c in predicate["checks"]} == {NO_ORACLE}
    assert predicate["source_weights"] == {"model.safetensors": sha256(deletion / "vanilla" / "model.safetensors")}
    assert predicate["request"]["target_hashes"] == hashed_targets([TARGET], audit_salt(small_folder))
    assert predicate["method"]["name"] == "chip" and predicate["method"]["settings"]["k"] == 10.0
    assert "source" in predicate["evidence"] and "oracle" not in predicate["evidence"]
    text = (deletion / "chip" / "audit.json").read_text()
    assert TARGET not in text and (small_folder / SALT_FILE).read_text().strip() not in text
    assert str(deletion) not in text  # no path either: a folder name can name a person


def test_audit_with_an_oracle_signs_and_verifies(run_cli, deletion, small_folder, tmp_path):
    keys = deletion / "keys"
    code, out, err = run_cli(
        "audit",
        "--model",
        deletion / "chip",
        "--data",
        small_folder,
        "--oracle",
        deletion / "oracle",
        "--out",
        tmp_path / "a",
        "--sign-key",
        keys / "audit_key.pem",
        "--limit",
        "20",
    )
    assert code == 0, err
    envelope = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json" and len(envelope["signatures"]) == 1
    record = json.loads(base64.b64decode(envelope["payload"]))
    predicate = record["predicate"]
    assert predicate["evidence"]["oracle"]["scores"]["forget"] is not None
    assert predicate["verdict"] in (PASS, FAIL)
    assert [c["check"] for c in predicate["checks"]] == [c.name for c in CHECKS]
    assert all(c["threshold"] > 0 and c["verdict"] in (PASS, FAIL, NOT_MEASURED) for c in predicate["checks"])
    page = (tmp_path / "a" / "report.html").read_text()
    assert "Deletion certificate" in page and "retrain oracle" in page and TARGET not in page
    code, out, err = run_cli(
        "audit", "--verify", tmp_path / "a", "--model", deletion / "chip", "--public-key", keys / "audit_key.pub.pem"
    )
    assert code == 0, err
    assert "signature verified" in " ".join(out.split())


@pytest.mark.parametrize(
    "tamper, message",
    [
        ("weights", "does not match the record's digest"),
        ("payload", "the signature does not verify"),
        ("other key", "signed with another key"),
        ("no key", "is signed; give --public-key"),
    ],
)
def test_verify_refuses_a_changed_record_or_model(run_cli, deletion, small_folder, tmp_path, tamper, message):
    keys = deletion / "keys"
    assert (
        run_cli(
            "audit",
            "--model",
            deletion / "chip",
            "--data",
            small_folder,
            "--out",
            tmp_path / "a",
            "--limit",
            "5",
            "--sign-key",
            keys / "audit_key.pem",
        )[0]
        == 0
    )
    model = tmp_path / "model"
    shutil.copytree(deletion / "chip", model)
    public = keys / "audit_key.pub.pem"
    if tamper == "weights":
        (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:-1] + b"\x01")
    elif tamper == "payload":
        envelope = json.loads((tmp_path / "a" / "audit.json").read_text())
        record = json.loads(base64.b64decode(envelope["payload"]))
        record["predicate"]["verdict"] = "pass" if record["predicate"]["verdict"] != "pass" else "fail"
        envelope["payload"] = base64.b64encode(json.dumps(record).encode()).decode()
        (tmp_path / "a" / "audit.json").write_text(json.dumps(envelope))
    elif tamper == "other key":
        assert run_cli("audit-keygen", "--out", tmp_path / "k2")[0] == 0
        public = tmp_path / "k2" / "audit_key.pub.pem"
    args = ["--public-key", public] if tamper != "no key" else []
    code, _, err = run_cli("audit", "--verify", tmp_path / "a", "--model", model, *args)
    assert code == 2 and message in " ".join(err.split())


def test_unsigned_records_verify_their_weights_only(run_cli, deletion):
    code, out, _ = run_cli("audit", "--verify", deletion / "chip" / "audit.json", "--model", deletion / "chip")
    assert code == 0 and "not signed" in out
    code, _, err = run_cli(
        "audit",
        "--verify",
        deletion / "chip",
        "--model",
        deletion / "chip",
        "--public-key",
        deletion / "keys" / "audit_key.pub.pem",
    )
    assert code == 2 and "is not signed" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sign-key", "{keys}/audit_key.pub.pem"], "is not an unencrypted PEM private key"),
        (["--sign-key", "{keys}/nothing.pem"], "is not an unencrypted PEM private key"),
        (["--public-key", "{keys}/audit_key.pub.pem"], "--public-key goes with --verify"),
        (["--oracle", "{root}/vanilla/missing"], "does not exist"),
    ],
)
def test_audit_bad_input(run_cli, deletion, small_folder, tmp_path, args, message):
    filled = [a.format(keys=deletion / "keys", root=deletion) for a in args]
    code, _, err = run_cli(
        "audit", "--model", deletion / "chip", "--data", small_folder, "--out", tmp_path / "a", *filled
    )
    assert code == 2 and message in " ".join(err.split())
    assert not (tmp_path / "a").exists()


def test_audit_refuses_a_model_that_was_not_unlearned(run_cli, deletion, small_folder, tmp_path):
    code, _, err = run_cli("audit", "--model", deletion / "oracle", "--data", small_folder, "--out", tmp_path / "a")
    assert code == 2 and "has no readable unlearn_config.json" in err


def _found(model: dict, oracle: dict | None) -> dict:
    def numbers(values):
        return {
            "scores": {k: values.get(k) for k in ("forget", "paraphrase", "retain", "siblings", "holdout_diagnostic")},
            "mia_auc": values.get("mia_auc"),
            "audit_member_share": values.get("audit_member_share"),
            "reconstruction": [
                {"context": "none", "score": 0.0},
                {"context": "full", "score": values["reconstruction"]},
            ]
            if "reconstruction" in values
            else [],
        }

    found = {"questions": {}, "model": numbers(model)}
    if oracle is not None:
        found["oracle"] = numbers(oracle)
    return found


@pytest.mark.parametrize(
    "model, oracle, verdicts, overall",
    [
        ({"forget": 0.30, "retain": 0.80}, {"forget": 0.28, "retain": 0.82}, {"forget": PASS, "retain": PASS}, PASS),
        (
            {"forget": 0.10, "retain": 0.80},
            {"forget": 0.30, "retain": 0.80},
            {"forget": FAIL},
            FAIL,
        ),  # forgot more than the oracle: damage
        ({"forget": 0.60, "retain": 0.80}, {"forget": 0.30, "retain": 0.80}, {"forget": FAIL}, FAIL),
        ({"forget": 0.30, "retain": 0.60}, {"forget": 0.30, "retain": 0.80}, {"retain": FAIL}, FAIL),
        (
            {"forget": 0.30, "retain": 0.95},
            {"forget": 0.30, "retain": 0.80},
            {"retain": PASS},
            PASS,
        ),  # keeping more is fine
        ({"forget": 0.3, "mia_auc": 0.70}, {"forget": 0.3, "mia_auc": 0.52}, {"mia_auc": FAIL}, FAIL),
        (
            {"forget": 0.3, "reconstruction": 0.5},
            {"forget": 0.3, "reconstruction": 0.3},
            {"reconstruction": FAIL},
            FAIL,
        ),
        (
            {"forget": 0.3, "reconstruction": 0.1},
            {"forget": 0.3, "reconstruction": 0.3},
            {"reconstruction": PASS},
            PASS,
        ),
        ({"forget": 0.3}, None, {"forget": NO_ORACLE, "retain": NO_ORACLE}, NO_ORACLE),
        ({"forget": 0.3}, {"forget": None}, {"forget": NOT_MEASURED, "siblings": NOT_MEASURED}, NOT_MEASURED),
    ],
)
def test_checks_compare_with_the_oracle_not_with_zero(model, oracle, verdicts, overall):
    rows, verdict = checks(_found(model, oracle))
    by_name = {row["check"]: row["verdict"] for row in rows}
    assert {name: by_name[name] for name in verdicts} == verdicts
    assert verdict == overall


def test_target_hashes_depend_on_the_salt_and_never_exist_without_one():
    assert hashed_targets(["inst-1.pat-02"], b"a" * 32) != hashed_targets(["inst-1.pat-02"], b"b" * 32)
    assert hashed_targets(["inst-1.pat-02"], b"a" * 32)[0].startswith("hmac-sha256:")
    assert hashed_targets(["inst-1.pat-02"], None) is None
