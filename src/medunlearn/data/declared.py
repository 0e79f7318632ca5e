"""A sample's declared knowledge type, read for the model that answers it and for a deletion request. No torch.

The types are declared by the question templates (:class:`~medunlearn.data.samples.Knowledge`, PROTOCOL.md §4).
The benchmark reads them to split a forget set into its memorised and inferable parts
(:mod:`medunlearn.evaluation.knowledge`), and a targeted deletion reads them to choose what to forget
(:mod:`medunlearn.methods.targets`): both the same way, from here.
"""

from __future__ import annotations

from medunlearn.data.hierarchy import DeletionRequest, Hospital
from medunlearn.data.questions import stated_in_report
from medunlearn.data.samples import Knowledge, Sample

MEMORISED, INFERABLE = Knowledge.MEMORISED.value, Knowledge.INFERABLE.value


def own_type(hospital: Hospital, sample: Sample, *, reads_report: bool = False) -> str | None:
    """The item's declared type before any request (None: not declared). A label the study's report states is
    inferable to a model that reads the report (``reads_report``), whatever the image shows."""
    if sample.knowledge is None:
        return None
    if sample.knowledge is Knowledge.INFERABLE or (reads_report and stated_in_report(hospital, sample)):
        return INFERABLE
    return MEMORISED


def deleted_by(hospital: Hospital, request: DeletionRequest, sample: Sample) -> bool:
    """Whether the request deletes the node the sample's fact is about (a patient's name asked on a deleted study's
    image is not: the patient is kept)."""
    return any(hospital.is_in_subtree(sample.fact_node, target) for target in request.targets)
