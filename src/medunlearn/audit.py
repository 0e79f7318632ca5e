"""The audit record of a deletion: what was deleted, from which model, how, and with what evidence.

A hospital runs ``unlearn`` because the law requires it and must later show the deletion
without the record itself leaking the person. The record (docs/audit.md) is an in-toto
Statement:

- ``subject``: the unlearned model's weight files and their SHA-256 — what the record is about;
- ``predicate``: the request (its level and the targets as salted hashes: HMAC-SHA-256
  keyed by the dataset folder's ``audit_salt``, which never leaves that folder), the
  dataset fingerprint, the source weights' digests, the method, its resolved settings and
  seed, the package versions, the cost, the evidence (scores of the unlearned model beside
  the retrain oracle's, or beside the source model's when no oracle was given) and a
  verdict per check and overall, with the thresholds written in.

With a key the Statement is wrapped in a DSSE envelope signed with Ed25519 (the
``cryptography`` library signs and verifies); :func:`verify` checks the signature and that
the weights on disk still match the subject's digests. The record holds scores and
hashes only: no node id, no name, no answer of the model, no path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from medunlearn.data.dataset import HospitalDataset
from medunlearn.errors import MedunlearnError
from medunlearn.models.card import weight_files

RECORD = "audit.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://medunlearn.dev/deletion-audit/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PASS, FAIL, NO_ORACLE, NOT_MEASURED = "pass", "fail", "no oracle", "not measured"
#: the verdict of a record written without evidence (`unlearn` by default): `medunlearn audit` scores it
NOT_SCORED = "not scored"
AUDIT_COMMAND = "medunlearn audit --model UNLEARNED --data DATA --oracle ORACLE --out RECORD"


@dataclass(frozen=True)
class Check:
    """One check of the evidence: the unlearned model's value against the oracle's, with its rule and tolerance."""

    name: str
    what: str
    rule: str  # "within": |model − oracle| ≤ t; "at_least": model ≥ oracle − t; "at_most": model ≤ oracle + t
    threshold: float

    def verdict(self, value: float | None, target: float | None, *, oracle: bool) -> str:
        if not oracle:
            return NO_ORACLE
        if value is None or target is None:
            return NOT_MEASURED
        difference = value - target
        ok = {
            "within": abs(difference) <= self.threshold,
            "at_least": difference >= -self.threshold,
            "at_most": difference <= self.threshold,
        }[self.rule]
        return PASS if ok else FAIL


#: the checks and their tolerances (docs/audit.md says why each is what it is)
CHECKS = (
    Check(
        "forget_memorised",
        "share answered of what only a model that saw the deleted data can know matches the retrain oracle's",
        "within",
        0.05,
    ),
    Check(
        "forget",
        "score on the deleted data matches the retrain oracle's (more forgetting than the oracle is damage too)",
        "within",
        0.05,
    ),
    Check("paraphrase", "score on reworded questions about the deleted data matches the oracle's", "within", 0.05),
    Check("retain", "score on the data that stays is no lower than the oracle's", "at_least", 0.05),
    Check("siblings", "score on the deleted node's siblings is no lower than the oracle's", "at_least", 0.05),
    Check(
        "holdout_diagnostic", "diagnostic score on never-seen patients is no lower than the oracle's", "at_least", 0.05
    ),
    Check("mia_auc", "the LOSS membership-inference AUC (forget vs held out) matches the oracle's", "within", 0.05),
    Check(
        "audit_member_share",
        "the share of deleted samples an SVC audit calls members matches the oracle's",
        "within",
        0.10,
    ),
    Check(
        "reconstruction",
        "with the fullest hierarchical context, no more of the deleted data comes back than from the oracle",
        "at_most",
        0.05,
    ),
)


# -- what the record says instead of identifiers --------------------------------------------------
def hashed_targets(targets: tuple[str, ...] | list[str], salt: bytes | None) -> list[str] | None:
    """Each target id as ``hmac-sha256:<hex>`` keyed by the dataset's salt.

    None without a salt (then no hash is given).
    """
    if salt is None:
        return None
    return [f"hmac-sha256:{hmac.new(salt, t.encode(), hashlib.sha256).hexdigest()}" for t in targets]


def weight_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of each weight file of a model folder, by file name."""
    digests = {}
    for path in weight_files(folder):
        if not path.is_file():
            raise MedunlearnError(
                f"model folder {folder} has no {path.name}; give a folder written by `medunlearn unlearn`."
            )
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[path.name] = digest.hexdigest()
    return digests


def environment() -> dict[str, str]:
    """The package versions a record was made with."""
    found = {"python": platform.python_version()}
    for package in ("medunlearn", "torch", "transformers", "peft", "safetensors", "scikit-learn"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


# -- the evidence ---------------------------------------------------------------------------------
def _value(numbers: dict[str, Any] | None, check: str) -> float | None:
    if numbers is None:
        return None
    if check in numbers["scores"]:
        value = numbers["scores"][check]
    elif check == "reconstruction":
        value = numbers["reconstruction"][-1]["score"] if numbers["reconstruction"] else None
    else:
        value = numbers.get(check)
    return None if value is None or value != value else float(value)  # NaN (one class only) is not a measurement


def checks(found: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Every check with its numbers and verdict, and the overall verdict."""
    has_oracle = "oracle" in found
    rows = []
    for check in CHECKS:
        value, target = _value(found.get("model"), check.name), _value(found.get("oracle"), check.name)
        rows.append(
            {
                "check": check.name,
                "what": check.what,
                "rule": check.rule,
                "threshold": check.threshold,
                "model": value,
                "oracle": target,
                "source": _value(found.get("source"), check.name),
                "verdict": check.verdict(value, target, oracle=has_oracle),
            }
        )
    verdicts = [row["verdict"] for row in rows]
    if not has_oracle:
        overall = NO_ORACLE
    elif FAIL in verdicts:
        overall = FAIL
    else:
        overall = PASS if PASS in verdicts else NOT_MEASURED
    return rows, overall


# -- the record -------------------------------------------------------------------------------
def statement(
    *,
    weights: dict[str, str],
    unlearned: dict[str, Any],
    dataset: HospitalDataset,
    salt: bytes | None,
    cost: dict[str, Any] | None,
    found: dict[str, Any],
    seed: int,
    limit: int,
) -> dict[str, Any]:
    """The in-toto Statement of one deletion; ``unlearned`` is the model folder's ``unlearn_config.json``."""
    request = unlearned["request"]
    scored = "model" in found
    rows, overall = checks(found) if scored else ([], NOT_SCORED)
    evaluation = (
        {
            "seed": seed,
            "questions_per_set_at_most": limit,
            "questions": found["questions"],
            "reference": "retrain oracle"
            if "oracle" in found
            else "none (no oracle given): the source model is shown for context",
            "image_budget": found.get("image_budget"),
        }
        if scored
        else {
            "scored": False,
            "how": f"the weights' digests bind this record to the deletion; `{AUDIT_COMMAND}` scores the evidence "
            "beside the retrain oracle and gives each check's verdict",
        }
    )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(weights.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "request": {
                "level": request["level"],
                "targets": len(request["targets"]),
                "target_hashes": hashed_targets(request["targets"], salt),
                "hash": "HMAC-SHA-256 of each target id, keyed by the dataset folder's audit_salt"
                if salt
                else "none: the dataset folder has no audit_salt (written before datasets had one)",
            },
            "dataset": {"fingerprint": dataset.fingerprint(), "source": dataset.source},
            "source_weights": unlearned.get("source_weights"),
            "method": {
                "name": unlearned["method"],
                "settings": unlearned.get("settings"),
                "seed": unlearned.get("seed"),
            },
            "sets": unlearned.get("counts"),
            "environment": environment(),
            "cost": cost,
            "evaluation": evaluation,
            "evidence": {role: found[role] for role in ("model", "oracle", "source") if role in found},
            "checks": rows,
            "verdict": overall,
        },
    }


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def signing_key(path: Path):
    """The Ed25519 private key in the PEM file ``path``, or one sentence why it is not one."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise MedunlearnError(
            f"--sign-key {path} is not an unencrypted PEM private key ({type(exc).__name__}); make one with "
            "`medunlearn audit-keygen`."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise MedunlearnError(
            f"--sign-key {path} is a {type(key).__name__}, not an Ed25519 key; make one with `medunlearn audit-keygen`."
        )
    return key


def _public_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise MedunlearnError(
            f"--public-key {path} is not a PEM public key ({type(exc).__name__}); give the .pub.pem that "
            "`medunlearn audit-keygen` wrote."
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise MedunlearnError(f"--public-key {path} is not an Ed25519 public key.")
    return key


def key_id(public_key) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def sign(record: dict[str, Any], key_path: Path) -> dict[str, Any]:
    """The Statement in a DSSE envelope, signed with the Ed25519 key at ``key_path``."""
    key = signing_key(key_path)
    payload = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    signature = key.sign(_pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}],
    }


def write_keys(folder: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair in ``folder``: ``audit_key.pem`` (owner-only) and ``audit_key.pub.pem``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = Ed25519PrivateKey.generate()
    private, public = Path(folder) / "audit_key.pem", Path(folder) / "audit_key.pub.pem"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private, public


def read_record(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the Statement, the envelope when it is signed) of an audit record file or of a folder holding audit.json."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MedunlearnError(
            f"audit record {path} is missing or not JSON ({type(exc).__name__}); give the audit.json that "
            "`medunlearn audit` or `unlearn` wrote."
        ) from None
    if isinstance(document, dict) and document.get("payloadType") == PAYLOAD_TYPE:
        try:
            inner = json.loads(base64.b64decode(document["payload"], validate=True))
        except (KeyError, ValueError, TypeError):
            raise MedunlearnError(
                f"audit record {path} is a DSSE envelope whose payload is not base64 JSON; the record is damaged."
            ) from None
        return _checked(inner, path), document
    return _checked(document, path), None


def _checked(document: Any, path: Path) -> dict[str, Any]:
    if (
        not isinstance(document, dict)
        or document.get("_type") != STATEMENT_TYPE
        or document.get("predicateType") != PREDICATE_TYPE
    ):
        raise MedunlearnError(
            f"audit record {path} is not a medunlearn deletion record (an in-toto Statement of {PREDICATE_TYPE})."
        )
    return document


def verify(record_path: Path, model_folder: Path, public_key: Path | None) -> dict[str, Any]:
    """Check the signature (with ``public_key``) and that ``model_folder``'s weights are the subject; the Statement, or
    one sentence why not."""
    record, envelope = read_record(record_path)
    if envelope is not None:
        if public_key is None:
            raise MedunlearnError(f"audit record {record_path} is signed; give --public-key to check the signature.")
        key = _public_key(public_key)
        from cryptography.exceptions import InvalidSignature

        payload = base64.b64decode(envelope["payload"])
        wanted = key_id(key)
        signatures = [s for s in envelope.get("signatures") or [] if s.get("keyid") == wanted]
        if not signatures:
            raise MedunlearnError(
                f"audit record {record_path} carries no signature of the key {public_key}; it was signed with "
                "another key."
            )
        try:
            key.verify(base64.b64decode(signatures[0]["sig"]), _pae(envelope["payloadType"], payload))
        except (InvalidSignature, ValueError):
            raise MedunlearnError(
                f"audit record {record_path}: the signature does not verify; the record was changed after it was "
                "signed."
            ) from None
    elif public_key is not None:
        raise MedunlearnError(
            f"audit record {record_path} is not signed, so --public-key cannot check it; sign records with --sign-key."
        )
    found = weight_digests(model_folder)
    for subject in record["subject"]:
        name, digest = subject["name"], subject["digest"]["sha256"]
        if found.get(name) != digest:
            raise MedunlearnError(
                f"{Path(model_folder) / name} does not match the record's digest; these are not the weights the "
                "record is about."
            )
    return record
