"""Synthetic chest radiographs: a study's findings and the image that shows them.

What each image carries (see data/synthetic.py): the institution's scanner look, the
patient's anatomy, a per-study label strip, and the study's findings and devices.
Deterministic per random generator; numpy + Pillow only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Findings:
    """The diagnostic labels of one study."""

    edema: int
    effusion: str  # "none", "left", "right", "bilateral"
    cardiomegaly: bool
    consolidation: str  # "none" or a lobe
    pneumothorax: str  # "none", "left", "right"
    device: str


@dataclass(frozen=True)
class Anatomy:
    """What stays the same across a patient's studies."""

    habitus: float
    heart_ratio: float
    heart_shift: float
    heart_height: float
    rib_spacing: float
    rib_phase: float
    texture_seed: int


@dataclass(frozen=True)
class ScannerLook:
    gamma: float
    contrast: float
    noise: float
    corner: int
    pattern: tuple[int, ...]


def draw_scanner_look(rng: np.random.Generator, corner: int) -> ScannerLook:
    """An institution's scanner: tone curve, contrast, noise and its burned-in corner marker."""
    return ScannerLook(
        gamma=float(rng.uniform(0.75, 1.35)),
        contrast=float(rng.uniform(0.8, 1.15)),
        noise=float(rng.uniform(0.01, 0.05)),
        corner=corner,
        pattern=tuple(int(b) for b in rng.integers(0, 2, size=6)),
    )


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """A patient's anatomy, the same in all their studies."""
    return Anatomy(
        habitus=float(rng.uniform(0.82, 1.0)),
        heart_ratio=float(rng.uniform(0.36, 0.46)),
        heart_shift=float(rng.uniform(-0.02, 0.12)),
        heart_height=float(rng.uniform(0.2, 0.3)),
        rib_spacing=float(rng.uniform(0.13, 0.2)),
        rib_phase=float(rng.uniform(0, 1)),
        texture_seed=int(rng.integers(2**31)),
    )


def draw_view(rng: np.random.Generator, findings: Findings) -> str:
    """AP for intubated or lined patients (and 30 % of the rest), else PA."""
    return "AP" if (findings.device in ("endotracheal tube", "central venous catheter") or rng.random() < 0.3) else "PA"


def draw_findings(rng: np.random.Generator, enlarged_heart: bool, pacemaker: bool) -> Findings:
    edema = int(rng.choice(4, p=[0.34, 0.24, 0.22, 0.20]))
    effusion = str(rng.choice(["none", "left", "right", "bilateral"], p=[0.55, 0.15, 0.15, 0.15]))
    cardiomegaly = enlarged_heart if rng.random() < 0.9 else not enlarged_heart
    consolidation = str(
        rng.choice(["none", "right lower lobe", "left lower lobe", "right upper lobe"], p=[0.6, 0.15, 0.15, 0.1])
    )
    pneumothorax = str(rng.choice(["none", "left", "right"], p=[0.8, 0.1, 0.1]))
    if pacemaker:
        device = "pacemaker"
    else:
        device = str(rng.choice(["none", "endotracheal tube", "central venous catheter"], p=[0.7, 0.15, 0.15]))
    return Findings(edema, effusion, cardiomegaly, consolidation, pneumothorax, device)


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float) -> np.ndarray:
    return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2


def _soft(inside: np.ndarray, width: float = 0.08) -> np.ndarray:
    """1 well inside an ellipse (value < 1), 0 outside, smooth in between."""
    return np.clip((1.0 - inside) / width, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    coarse = rng.standard_normal((max(2, size // scale), max(2, size // scale))).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def draw_radiograph(
    rng: np.random.Generator, size: int, anatomy: Anatomy, look: ScannerLook, f: Findings, view: str, code: int = 0
) -> np.ndarray:
    """Return a ``size``×``size`` uint8 frontal chest radiograph for these labels."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    v, u = np.meshgrid(grid, grid, indexing="ij")  # v: down, u: right (patient's left)
    h = anatomy.habitus
    img = np.full((size, size), 0.06, np.float32)
    body = _soft(_ellipse(u, v, 0, 0.15, 0.92 * h, 1.05), 0.15)
    img += 0.30 * body
    # lungs (dark) with patient-specific vessel texture
    lungs = []
    for side in (-1, 1):
        lung = _soft(_ellipse(u, v, side * 0.36 * h, -0.02, 0.27 * h, 0.6), 0.12)
        lungs.append(lung)
    lung_l, lung_r = lungs  # l = image left = patient's right
    lung = np.maximum(lung_l, lung_r)
    texture = _smooth_noise(np.random.default_rng(anatomy.texture_seed), size, 6)
    markings = 0.05 * texture * lung
    img -= 0.2 * lung
    # ribs: curved bright bands over the thorax
    rib_v = v - 0.22 * u**2
    ribs = (np.sin(2 * np.pi * (rib_v / anatomy.rib_spacing + anatomy.rib_phase)) > 0.55).astype(np.float32)
    thorax = _soft(_ellipse(u, v, 0, -0.02, 0.75 * h, 0.68), 0.1)
    img += 0.10 * ribs * thorax
    # spine and mediastinum
    img += 0.28 * np.clip(1 - np.abs(u) / 0.09, 0, 1) * _soft(_ellipse(u, v, 0, 0.05, 0.3, 1.1), 0.1)
    # heart: cardiomegaly widens it; AP view magnifies it a little
    ratio = anatomy.heart_ratio + (0.17 if f.cardiomegaly else 0.0) + (0.03 if view == "AP" else 0.0)
    heart = _soft(_ellipse(u, v, anatomy.heart_shift, 0.3, ratio * 0.75 * h, anatomy.heart_height), 0.1)
    img += 0.38 * heart
    # apex of a pneumothorax: no markings, a thin pleural line
    if f.pneumothorax != "none":
        side = -1 if f.pneumothorax == "right" else 1
        cu, cv = side * 0.36 * h, -0.35
        pocket = _ellipse(u, v, cu + side * 0.05, cv, 0.2 * h, 0.26)
        inside = (pocket < 1) & ((lung_l if side < 0 else lung_r) > 0.3)
        markings = np.where(inside, 0.0, markings)
        img = np.where(inside, img - 0.08, img)
        img += 0.35 * ((np.abs(pocket - 1) < 0.12) & ((lung_l if side < 0 else lung_r) > 0.3))
    img += markings
    # edema: perihilar haze, graded
    if f.edema:
        haze = np.zeros_like(img)
        for side in (-1, 1):
            haze += np.exp(-_ellipse(u, v, side * 0.2 * h, 0.02, 0.16 + 0.05 * f.edema, 0.2 + 0.07 * f.edema))
        patchy = 1 + 0.3 * _smooth_noise(rng, size, 10)
        img += 0.075 * f.edema * haze * lung * patchy
    # consolidation: a patchy opacity in one lobe
    if f.consolidation != "none":
        cu = (-0.36 if f.consolidation.startswith("right") else 0.36) * h
        cv = 0.25 if "lower" in f.consolidation else -0.3
        cu += float(rng.uniform(-0.06, 0.06))
        blob = np.exp(-_ellipse(u, v, cu, cv, 0.16, 0.14) * 1.5) * (1 + 0.5 * _smooth_noise(rng, size, 12))
        img += 0.3 * np.clip(blob, 0, None) * lung
    # effusion: fluid level with a meniscus at the costophrenic angle
    if f.effusion != "none":
        for side in (-1, 1):
            if f.effusion == "bilateral" or (f.effusion == "right") == (side < 0):
                level = 0.3 - 0.18 * np.abs(u - side * 0.36 * h) / (0.27 * h)
                fluid = ((v > level) & (np.sign(u) == side)).astype(np.float32)
                img += 0.3 * fluid * (lung_l if side < 0 else lung_r) + 0.08 * fluid * body
    # devices
    if f.device == "pacemaker":
        img += 0.6 * ((np.abs(u + 0.55 * h) < 0.07) & (np.abs(v + 0.62) < 0.05))
        lead = np.abs((u + 0.55 * h) - (v + 0.62) * (0.55 * h + 0.05) / 0.9) < 0.012
        img += 0.45 * (lead & (v > -0.62) & (v < 0.28))
    elif f.device == "endotracheal tube":
        img += 0.55 * ((np.abs(u - 0.01) < 0.018) & (v < -0.32))
    elif f.device == "central venous catheter":
        line = np.abs((u + 0.3 * h) - (v + 0.85) * (-0.3 * h + 0.05) / 0.75) < 0.012
        img += 0.5 * (line & (v > -0.85) & (v < -0.1))
    # scanner look: tone curve, contrast, blur, noise, burned-in marker
    img = np.clip(img, 0, 1) ** look.gamma * look.contrast
    blurred = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(size / 224))
    img = np.asarray(blurred, dtype=np.float32) / 255 + look.noise * rng.standard_normal((size, size)).astype(
        np.float32
    )
    _burn_marker(img, look)
    _burn_label(img, code)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _burn_marker(img: np.ndarray, look: ScannerLook) -> None:
    size = img.shape[0]
    cell = max(2, size // 28)
    block = np.zeros((2 * cell, 3 * cell), np.float32)
    for k, bit in enumerate(look.pattern):
        r, c = divmod(k, 3)
        block[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = 0.95 if bit else 0.35
    pad = cell
    bh, bw = block.shape
    top = pad if look.corner in (0, 1) else size - pad - bh
    left = pad if look.corner in (0, 2) else size - pad - bw
    img[top : top + bh, left : left + bw] = block


def _burn_label(img: np.ndarray, code: int) -> None:
    """A 2×8 strip of bright/dim cells at the bottom centre spelling the study's 16-bit code."""
    size = img.shape[0]
    cell = max(2, size // 16)
    top, left = size - 2 * cell - 1, (size - 8 * cell) // 2
    for k in range(16):
        r, c = divmod(k, 8)
        img[top + r * cell : top + (r + 1) * cell, left + c * cell : left + (c + 1) * cell] = (
            0.9 if (code >> k) & 1 else 0.2
        )


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
