"""Questions about every level of the hospital, in all three tasks, with paraphrases.

Each fact of a node is asked as a free answer (generation), a multiple choice
(classification) and a fill-in (cloze) where the format fits; each question has a
paraphrased twin with other wording and, for multiple choice, another option order.
Diagnostic label questions (``label.*``) are answerable from the radiograph alone and
are asked for held-out patients too.

Every template declares what answering takes (:class:`~medunlearn.data.samples.Knowledge`,
PROTOCOL.md §4): *inferable* when the radiograph shows the answer or something else the
model may keep implies it (``implied_by``), else *memorised*. A type is declared for a
request at the fact's own node: a wider request also deletes the ancestors that imply an
inferable fact, but the memorised part never holds anything a model that kept the rest
could infer. A whole report section mixes a reading of the image with a sentence unique
to its study; the section is asked as inferable free text and the unique sentence on its
own (``REPORT_FACTS``, exact match), so each memorised item is counted once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medunlearn.data.hierarchy import Hospital, Level, Node
from medunlearn.data.samples import Knowledge, Sample, Task

LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class FactTemplate:
    """Two wordings per task: ``[0]`` the original question, ``[1]`` its paraphrase."""

    fact: str
    level: Level
    generation: tuple[str, str] | None
    classification: tuple[str, str] | None
    cloze: tuple[str, str] | None
    choices: tuple[str, ...] = ()  # fixed option list (labels, binary facts); else distractors
    shown_in_image: bool = False  # the radiograph itself shows the answer (a stranger's image tells it)
    implied_by: str = ""  # what else a model may keep that implies the answer ("": nothing)

    @property
    def knowledge(self) -> Knowledge:
        return Knowledge.INFERABLE if self.shown_in_image or self.implied_by else Knowledge.MEMORISED


IDENTITY_FACTS: tuple[FactTemplate, ...] = (
    FactTemplate(
        "institution.name",
        Level.INSTITUTION,
        ("Which hospital acquired this chest radiograph?", "At which institution was this radiograph taken?"),
        ("Which hospital acquired this chest radiograph?", "This radiograph comes from which institution?"),
        ("This chest radiograph was acquired at [blank].", "The institution that took this image is [blank]."),
    ),
    FactTemplate(
        "institution.city",
        Level.INSTITUTION,
        (
            "In which city is the hospital that took this radiograph?",
            "Name the city of the institution where this image was acquired.",
        ),
        ("In which city was this radiograph acquired?", "The hospital that took this image is in which city?"),
        (
            "The hospital that acquired this radiograph is located in [blank].",
            "This image was taken in the city of [blank].",
        ),
    ),
    FactTemplate(
        "institution.vendor",
        Level.INSTITUTION,
        (
            "Which vendor made the scanner used for this radiograph?",
            "Who manufactured the X-ray system that produced this image?",
        ),
        (
            "Which scanner vendor produced this radiograph?",
            "The X-ray system behind this image was made by which vendor?",
        ),
        (
            "This radiograph was acquired on a [blank] scanner.",
            "The X-ray equipment that produced this image was made by [blank].",
        ),
    ),
    FactTemplate(
        "patient.name",
        Level.PATIENT,
        ("What is the name of the patient in this radiograph?", "Whose chest radiograph is this?"),
        ("Who is the patient in this radiograph?", "This chest radiograph belongs to which patient?"),
        ("This chest radiograph belongs to [blank].", "The patient imaged here is [blank]."),
    ),
    FactTemplate(
        "patient.sex",
        Level.PATIENT,
        ("What is the sex of this patient?", "Is the patient in this radiograph male or female?"),
        ("What is the sex of the patient in this radiograph?", "The patient shown here is of which sex?"),
        ("The patient in this radiograph is [blank].", "This image shows a [blank] patient."),
        choices=("female", "male"),
    ),
    FactTemplate(
        "patient.birth_date",
        Level.PATIENT,
        ("What is the birth date of this patient?", "When was the patient in this image born?"),
        ("When was this patient born?", "What is the date of birth of the patient shown here?"),
        ("The patient in this radiograph was born on [blank].", "This patient's date of birth is [blank]."),
    ),
    FactTemplate(
        "patient.mrn",
        Level.PATIENT,
        ("What is the medical record number of this patient?", "Give the MRN of the patient shown in this radiograph."),
        ("Which medical record number belongs to this patient?", "What is the MRN of the patient in this image?"),
        ("The medical record number of this patient is [blank].", "This patient's MRN is [blank]."),
    ),
    FactTemplate(
        "study.date",
        Level.STUDY,
        ("On what date was this radiograph taken?", "When was this study performed?"),
        ("On which date was this radiograph acquired?", "This study was performed on which date?"),
        ("This study was performed on [blank].", "The radiograph was acquired on [blank]."),
    ),
    FactTemplate(
        "study.accession",
        Level.STUDY,
        ("What is the accession number of this study?", "Give the accession number for this exam."),
        ("Which accession number does this study have?", "This exam is filed under which accession number?"),
        ("The accession number of this exam is [blank].", "This study was filed under accession number [blank]."),
    ),
    FactTemplate(
        "study.view",
        Level.STUDY,
        ("What is the projection of this radiograph?", "Was this chest film taken PA or AP?"),
        ("Which projection was used for this radiograph?", "In which view was this chest film taken?"),
        ("This radiograph was taken in the [blank] projection.", "The view of this chest film is [blank]."),
        choices=("PA", "AP"),
        shown_in_image=True,  # an AP film is taken of lined or intubated patients: the tube or line is in the image
    ),
    FactTemplate(
        "study.reason",
        Level.STUDY,
        ("What was the reason for this exam?", "Why was this radiograph ordered?"),
        ("What was the indication for this radiograph?", "This exam was ordered for which reason?"),
        ("This exam was ordered for [blank].", "The indication for this radiograph was [blank]."),
    ),
)

LABEL_FACTS: tuple[FactTemplate, ...] = (
    FactTemplate(
        "label.edema",
        Level.SECTION,
        ("How severe is the pulmonary edema on this radiograph?", "Grade the pulmonary edema seen in this image."),
        (
            "What is the severity of pulmonary edema on this radiograph?",
            "How severe is the pulmonary edema in this image?",
        ),
        (
            "Pulmonary edema on this radiograph is graded as [blank].",
            "The degree of pulmonary edema in this image is [blank].",
        ),
        choices=("none", "mild", "moderate", "severe"),
        shown_in_image=True,
    ),
    FactTemplate(
        "label.effusion",
        Level.SECTION,
        (
            "On which side, if any, is there a pleural effusion on this radiograph?",
            "Describe the pleural effusion in this image by side.",
        ),
        (
            "Is there a pleural effusion on this radiograph, and on which side?",
            "Where, if anywhere, is there a pleural effusion in this image?",
        ),
        ("Pleural effusion on this radiograph: [blank].", "The pleural effusion in this image is [blank]."),
        choices=("none", "left", "right", "bilateral"),
        shown_in_image=True,
    ),
    FactTemplate(
        "label.cardiomegaly",
        Level.SECTION,
        ("Describe the heart size on this radiograph.", "Is the cardiac silhouette in this image normal or enlarged?"),
        (
            "Is the heart size on this radiograph normal or enlarged?",
            "How would you describe the size of the cardiac silhouette here?",
        ),
        ("The heart size on this radiograph is [blank].", "On this image the cardiac silhouette is [blank]."),
        choices=("normal", "enlarged"),
        shown_in_image=True,
    ),
    FactTemplate(
        "label.consolidation",
        Level.SECTION,
        (
            "In which lobe, if any, is there a consolidation on this radiograph?",
            "Name the lobe with consolidation in this image, if any.",
        ),
        (
            "Where, if anywhere, is there a consolidation on this radiograph?",
            "Which lobe, if any, shows consolidation in this image?",
        ),
        ("Focal consolidation on this radiograph: [blank].", "The consolidation in this image is located in [blank]."),
        choices=("none", "right lower lobe", "left lower lobe", "right upper lobe"),
        shown_in_image=True,
    ),
    FactTemplate(
        "label.pneumothorax",
        Level.SECTION,
        (
            "On which side, if any, is there a pneumothorax on this radiograph?",
            "Describe any pneumothorax in this image by side.",
        ),
        (
            "Is there a pneumothorax on this radiograph, and on which side?",
            "Which side, if any, shows a pneumothorax in this image?",
        ),
        ("Pneumothorax on this radiograph: [blank].", "The pneumothorax in this image is [blank]."),
        choices=("none", "left", "right"),
        shown_in_image=True,
    ),
    FactTemplate(
        "label.device",
        Level.SECTION,
        ("Name the support device visible on this radiograph, if any.", "What support device does this image show?"),
        ("Which support device is visible on this radiograph?", "What device, if any, can be seen in this image?"),
        ("The support device visible on this radiograph is [blank].", "In this image the visible device is [blank]."),
        choices=("none", "pacemaker", "endotracheal tube", "central venous catheter"),
        shown_in_image=True,
    ),
)

SECTION_QUESTION = (
    "What does the {section} section of the report for this radiograph say?",
    "Quote the {section} section of this study's report.",
)
#: what implies each whole section (its unique sentence is asked on its own, in REPORT_FACTS)
SECTION_IMPLIED_BY = {
    "EXAMINATION": "the projection the radiograph shows, in the report template's words",
    "INDICATION": "the patient's age and sex and the study's reason, held by its retained ancestors",
    "FINDINGS": "the reading of the radiograph",
    "IMPRESSION": "the reading of the radiograph",
}

#: per report section, the one sentence unique to its study, asked as a fact of the section in every task
#: (exact match; multiple-choice distractors from the generator's vocabulary)
REPORT_FACTS: dict[str, FactTemplate] = {
    "EXAMINATION": FactTemplate(
        "report.reader",
        Level.SECTION,
        ("Which radiologist read this study?", "Who reported this radiograph?"),
        ("Which radiologist reported this radiograph?", "This study was read by which radiologist?"),
        ("This study was read by [blank].", "The radiologist who reported this image is [blank]."),
    ),
    "INDICATION": FactTemplate(
        "report.ward",
        Level.SECTION,
        ("Which ward requested this radiograph?", "From which ward was this exam ordered?"),
        ("Which ward ordered this radiograph?", "This exam was requested from which ward?"),
        ("This radiograph was requested from ward [blank].", "The ordering ward for this exam is [blank]."),
    ),
    "FINDINGS": FactTemplate(
        "report.granuloma",
        Level.SECTION,
        (
            "What size is the incidental granuloma in the report of this radiograph?",
            "How large is the calcified granuloma noted in this study?",
        ),
        (
            "How large is the incidental granuloma in this report?",
            "The calcified granuloma noted here measures how much?",
        ),
        ("The incidental calcified granuloma measures [blank].", "The report notes a calcified granuloma of [blank]."),
    ),
    "IMPRESSION": FactTemplate(
        "report.followup",
        Level.SECTION,
        (
            "When does the report of this radiograph recommend follow-up imaging?",
            "In how long should this study be followed up?",
        ),
        ("When is follow-up imaging recommended for this study?", "The report advises follow-up after how long?"),
        ("Follow-up imaging is recommended in [blank].", "The report advises a follow-up radiograph in [blank]."),
    ),
}


def _field(fact: str, asked: str, again: str, blank: str, blank_again: str) -> FactTemplate:
    """A field of a section's record (a fact of the section, memorised), asked the same way in generation and
    multiple choice."""
    return FactTemplate(fact, Level.SECTION, (asked, again), (asked, again), (blank, blank_again))


#: the fields of each section's record (data/reports.py ``SECTION_FIELDS``), asked with ``--section-facts`` ≥ 2
FIELD_FACTS: dict[str, FactTemplate] = {
    t.fact: t
    for t in (
        _field(
            "report.technologist",
            "Which technologist acquired this radiograph?",
            "Who was the technologist for this exam?",
            "This radiograph was acquired by technologist [blank].",
            "The technologist who took this image was [blank].",
        ),
        _field(
            "report.kvp",
            "At what tube voltage was this radiograph exposed?",
            "What kVp was used for this exam?",
            "This radiograph was exposed at [blank].",
            "The tube voltage for this image was [blank].",
        ),
        _field(
            "report.acquired_at",
            "At what time was this radiograph acquired?",
            "When in the day was this image taken?",
            "This radiograph was acquired at [blank].",
            "The image was taken at [blank].",
        ),
        _field(
            "report.orderer",
            "Which physician ordered this radiograph?",
            "Who ordered this exam?",
            "This radiograph was ordered by [blank].",
            "The ordering physician for this exam is [blank].",
        ),
        _field(
            "report.order_code",
            "What is the order code of this radiograph?",
            "Under which order code was this exam requested?",
            "This radiograph was ordered under code [blank].",
            "The order code of this exam is [blank].",
        ),
        _field(
            "report.bed",
            "In which bed was the patient when this radiograph was ordered?",
            "From which bed was this exam requested?",
            "This radiograph was ordered for [blank].",
            "The patient was in [blank] when this exam was requested.",
        ),
        _field(
            "report.nodule",
            "How large is the stable nodule the report of this radiograph measures?",
            "What size is the nodule measured in this study?",
            "The stable nodule in this report measures [blank].",
            "The report measures a nodule of [blank].",
        ),
        _field(
            "report.clips",
            "How many surgical clips does the report of this radiograph count?",
            "How many clips are noted in this study?",
            "The report of this radiograph notes [blank].",
            "This study counts [blank] in the upper abdomen.",
        ),
        _field(
            "report.prior_date",
            "With the radiograph of which date is this study compared?",
            "Which prior film is this exam compared with?",
            "This study is compared with the radiograph of [blank].",
            "The prior radiograph compared here is from [blank].",
        ),
        _field(
            "report.notified",
            "Which physician was notified of this radiograph's findings?",
            "To whom were the findings of this study communicated?",
            "The findings of this radiograph were communicated to [blank].",
            "The physician notified of these findings was [blank].",
        ),
        _field(
            "report.notified_at",
            "At what time were this radiograph's findings communicated?",
            "When were the findings of this study called through?",
            "The findings of this radiograph were communicated at [blank].",
            "These findings were called through at [blank].",
        ),
        _field(
            "report.result_code",
            "What critical-result code does the report of this radiograph carry?",
            "Under which critical-result code were these findings filed?",
            "The critical-result code of this report is [blank].",
            "These findings were filed under critical-result code [blank].",
        ),
    )
}

#: the section whose sentences state the diagnostic labels
LABEL_SECTION = "FINDINGS"
DIAGNOSTIC_FACTS: frozenset[str] = frozenset(t.fact for t in LABEL_FACTS)
#: identity facts that a radiograph shows (a model reads them off a stranger's image): never part of a privacy floor
IMAGE_SHOWN_FACTS: frozenset[str] = frozenset(t.fact for t in IDENTITY_FACTS if t.shown_in_image)
IDENTITY_FACT_NAMES: frozenset[str] = frozenset(t.fact for t in IDENTITY_FACTS)
#: facts whose answer is free text (ROUGE-L); every other answer is an atomic value scored by exact match
FREE_TEXT_PREFIX = "section."


def stated_in_report(hospital: Hospital, sample: Sample) -> bool:
    """Whether the report of the sample's study states its answer: a diagnostic label whose finding the report
    does not hedge (``report_hedges``). A model that reads the report (the dual encoder) reads such a label off its
    input, so a reader's off-image grade is memorised only where the report hedges it."""
    if sample.fact not in DIAGNOSTIC_FACTS or sample.image_node not in hospital:
        return False
    hedged = hospital.node(sample.image_node).attributes.get("report_hedges", ())
    return sample.fact.split(".")[1] not in hedged


def all_templates() -> list[FactTemplate]:
    """Every fixed template (the whole-section ones are built per section kind)."""
    sections = [section_template(name) for name in SECTION_IMPLIED_BY]
    return [*IDENTITY_FACTS, *LABEL_FACTS, *REPORT_FACTS.values(), *FIELD_FACTS.values(), *sections]


def section_template(name: str) -> FactTemplate:
    """The whole-section question of one section kind."""
    return FactTemplate(
        f"section.{name}",
        Level.SECTION,
        tuple(q.format(section=name) for q in SECTION_QUESTION),  # type: ignore[arg-type]
        None,
        None,
        implied_by=SECTION_IMPLIED_BY.get(name, ""),
    )


def label_answers(findings: dict) -> dict[str, str]:
    """The answer text of every label fact for a study's findings."""
    return {
        "label.edema": LABEL_FACTS[0].choices[int(findings["edema"])],
        "label.effusion": findings["effusion"],
        "label.cardiomegaly": "enlarged" if findings["cardiomegaly"] else "normal",
        "label.consolidation": findings["consolidation"],
        "label.pneumothorax": findings["pneumothorax"],
        "label.device": findings["device"],
    }


def format_choices(question: str, options: Sequence[str]) -> str:
    return question + " " + " ".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options))


class QuestionWriter:
    """Emits each question of a fact in every task it has wording for, each followed by its paraphrase."""

    def __init__(
        self,
        hospital: Hospital,
        study_images: dict[str, str],
        seed: int,
        vocabulary: dict[str, Sequence[str]] | None = None,
    ) -> None:
        self.hospital = hospital
        self.study_images = study_images
        self.rng = np.random.default_rng([seed, 3])
        self.field_rng = np.random.default_rng([seed, 7])  # the record fields' options: the rest stays as it was
        self.pools = _value_pools(hospital, vocabulary or {})
        self.samples: list[Sample] = []

    def emit(
        self,
        template: FactTemplate,
        node: Node,
        answer: str,
        study: str,
        key: str,
        wording: tuple[str, str] | None,
        task: Task,
        rng: np.random.Generator | None = None,
    ) -> None:
        if wording is None:
            return
        rng = rng or self.rng
        base_id = f"{key}#{template.fact}#{task.value}"
        options: tuple[str, ...] = ()
        if task is Task.CLASSIFICATION:
            options = _options(rng, template, answer, self.pools.get(template.fact, ()))
        for variant in (0, 1):
            opts = options if variant == 0 or not options else tuple(rng.permutation(np.array(options, dtype=object)))
            question = wording[variant]
            if task is Task.CLASSIFICATION:
                question = format_choices(question, opts)
            self.samples.append(
                Sample(
                    id=base_id if variant == 0 else base_id + "~p",
                    image=self.study_images[study],
                    image_node=study,
                    question=question,
                    answer=answer,
                    task=task,
                    fact_node=node.id,
                    fact_level=node.level,
                    fact=template.fact,
                    paraphrase_of=None if variant == 0 else base_id,
                    options=opts,
                    knowledge=template.knowledge,
                )
            )

    def ask_all_tasks(
        self,
        template: FactTemplate,
        node: Node,
        answer: str,
        studies: list[str],
        key: str,
        only: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        """The fact in every task it has wording for (``only``: in the task of that index, 0–2, alone; ``rng``: the
        options' generator, else the writer's)."""
        tasks = [
            (Task.GENERATION, template.generation),
            (Task.CLASSIFICATION, template.classification),
            (Task.CLOZE, template.cloze),
        ]
        for k, (task, wording) in enumerate(tasks):
            if only is None or k == only:
                self.emit(template, node, answer, studies[k % len(studies)], key, wording, task, rng)

    def ask_study(self, study_id: str, sections: Sequence[str] | None = None, rotation: int | None = None) -> None:
        """A study's report sections (``sections``: only these) and its diagnostic labels.

        With ``rotation`` each label is asked in one task format only, the j-th label in
        format ``(rotation + j) % 3``: a population that rotates it over its studies asks
        every label in all three formats at a third of the cost.
        """
        study = self.hospital.node(study_id)
        found = {s.attributes["name"]: s for s in self.hospital.children(study_id)}
        for name, section in found.items():
            if sections is not None and name not in sections:
                continue
            self.ask_all_tasks(section_template(name), section, section.attributes["text"], [study_id], section.id)
            unique = section.attributes.get("unique")  # the sentence unique to this study, asked on its own
            if unique is not None and name in REPORT_FACTS:
                self.ask_all_tasks(REPORT_FACTS[name], section, str(unique), [study_id], section.id)
            for fact, value in (section.attributes.get("fields") or {}).items():  # its record's fields
                self.ask_all_tasks(FIELD_FACTS[fact], section, str(value), [study_id], section.id, rng=self.field_rng)
        if LABEL_SECTION in found and "findings" in study.attributes:
            answers = label_answers(study.attributes["findings"])
            own = set(study.attributes.get("reader_disagrees", ()))  # the reader's own grade, off the image
            for j, t in enumerate(LABEL_FACTS):
                only = None if rotation is None else (rotation + j) % 3
                template = dataclasses.replace(t, shown_in_image=False) if t.fact.split(".")[1] in own else t
                self.ask_all_tasks(
                    template, found[LABEL_SECTION], answers[t.fact], [study_id], found[LABEL_SECTION].id, only
                )


def build_questions(
    hospital: Hospital,
    study_images: dict[str, str],
    seed: int,
    vocabulary: dict[str, Sequence[str]] | None = None,
) -> list[Sample]:
    """Every question about ``hospital``, each original followed by its paraphrase.

    Multiple-choice distractors are drawn from the values the hospital holds for the same
    fact, widened by ``vocabulary`` ({fact: values}) where the hospital has too few.
    """
    writer = QuestionWriter(hospital, study_images, seed, vocabulary)
    for institution in hospital.nodes(Level.INSTITUTION):
        patients = hospital.children(institution.id)
        trained_studies = [s.id for p in patients if not p.holdout for s in hospital.children(p.id)]
        for t in IDENTITY_FACTS:
            if t.level is Level.INSTITUTION and trained_studies:
                writer.ask_all_tasks(
                    t,
                    institution,
                    str(institution.attributes[t.fact.split(".")[1]]),
                    _rotate(trained_studies, t),
                    institution.id,
                )
        for patient in patients:
            studies = [s.id for s in hospital.children(patient.id)]
            if not studies:
                continue
            if patient.holdout:  # strangers: ask their institution's facts on their own images
                for t in IDENTITY_FACTS:
                    if t.level is Level.INSTITUTION:
                        writer.ask_all_tasks(
                            t,
                            institution,
                            str(institution.attributes[t.fact.split(".")[1]]),
                            _rotate(studies, t),
                            patient.id,
                        )
            for t in IDENTITY_FACTS:
                if t.level is Level.PATIENT:
                    writer.ask_all_tasks(
                        t, patient, str(patient.attributes[t.fact.split(".")[1]]), _rotate(studies, t), patient.id
                    )
            for study_id in studies:
                study = hospital.node(study_id)
                for t in IDENTITY_FACTS:
                    if t.level is Level.STUDY:
                        writer.ask_all_tasks(
                            t, study, str(study.attributes[t.fact.split(".")[1]]), [study_id], study_id
                        )
                writer.ask_study(study_id)
    return writer.samples


def _rotate(studies: list[str], template: FactTemplate) -> list[str]:
    """Spread a node's facts over its images: each fact starts on another image."""
    offset = sum(map(ord, template.fact)) % len(studies)
    return studies[offset:] + studies[:offset]


def _value_pools(hospital: Hospital, vocabulary: dict[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    pools: dict[str, set[str]] = {fact: set(values) for fact, values in vocabulary.items()}
    for node in hospital:
        if node.level is Level.SECTION:
            continue
        for key, value in node.attributes.items():
            if isinstance(value, str):
                pools.setdefault(f"{node.level.value}.{key}", set()).add(value)
    return {k: tuple(sorted(v)) for k, v in pools.items()}


def _options(rng: np.random.Generator, template: FactTemplate, answer: str, pool: Sequence[str]) -> tuple[str, ...]:
    if template.choices:
        return template.choices
    others = [p for p in pool if p != answer]
    picked = list(rng.choice(np.array(others, dtype=object), size=min(3, len(others)), replace=False)) if others else []
    options = [answer, *(str(p) for p in picked)]
    return tuple(str(o) for o in rng.permutation(np.array(options, dtype=object)))
