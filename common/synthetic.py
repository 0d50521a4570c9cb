"""Deterministic synthetic faces whose appearance changes with age in a learnable way.

For smoke tests and ``--dataset synthetic`` demo runs only; results on it are labelled as
synthetic everywhere and it never stands in for FG-NET.

What changes with age (so a network can learn it): the head's proportions (a child's eyes sit
lower in a rounder face), the number and contrast of forehead wrinkles, greying hair and a
darker, thinner mouth. Person identity sets skin tone, hair colour and face width; every image
also gets its own pose jitter, background and noise.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from common.cache import FaceArrays


def _face(rng: np.random.Generator, size: int, age: float, person: dict) -> np.ndarray:
    s = size / 64.0
    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.uniform(40, 200, 3)
    youth = max(0.0, 1.0 - age / 18.0)  # 1 for a newborn, 0 from adulthood
    grey = float(np.clip((age - 30) / 40, 0, 1))
    cx = size / 2 + rng.normal(0, 1.0) * s
    cy = size / 2 + rng.normal(0, 1.0) * s
    half_w = (17 + 3 * youth + person["width"]) * s
    half_h = (23 - 2 * youth) * s
    hair = person["hair"] * (1 - grey) + np.array([215, 215, 215]) * grey
    cv2.ellipse(
        img,
        (round(cx), round(cy - 3 * s)),
        (round(half_w + 3 * s), round(half_h + 2 * s)),
        0,
        180,
        360,
        hair.tolist(),
        -1,
    )
    cv2.ellipse(
        img,
        (round(cx), round(cy)),
        (round(half_w), round(half_h)),
        0,
        0,
        360,
        person["skin"].tolist(),
        -1,
    )
    eye_y = cy + (-4 + 7 * youth) * s
    for dx in (-8, 8):
        cv2.circle(
            img,
            (round(cx + dx * s), round(eye_y)),
            max(1, round((2 + youth) * s)),
            (30, 30, 30),
            -1,
        )
    wrinkle = np.clip((age - 25) / 45, 0, 1)
    for k in range(int(round(5 * wrinkle))):
        y = round(eye_y - (7 + 2.5 * k) * s)
        shade = (person["skin"] * (1 - 0.45 * wrinkle)).tolist()
        cv2.line(img, (round(cx - 9 * s), y), (round(cx + 9 * s), y), shade, max(1, round(s)))
    mouth_y = round(cy + (12 - 2 * youth) * s)
    lip = (np.array([170, 60, 60]) * (1 - 0.4 * grey)).tolist()
    cv2.ellipse(
        img,
        (round(cx), mouth_y),
        (round((6 - 2 * youth) * s), max(1, round(2 * s))),
        0,
        0,
        360,
        lip,
        -1,
    )
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic(
    n_persons: int = 40,
    images_per_person: int = 8,
    size: int = 64,
    max_age: int = 70,
    seed: int = 0,
) -> FaceArrays:
    """Generates ``n_persons × images_per_person`` faces, (N, size, size, 3) uint8 RGB.

    Each synthetic person is seen at ``images_per_person`` different ages spread over a span of
    up to 30 years, so person-disjoint splits behave as on real ageing data sets.
    """
    if n_persons < 1 or images_per_person < 1 or size < 16:
        raise ValueError("need n_persons >= 1, images_per_person >= 1 and size >= 16")
    rng = np.random.default_rng(seed)
    images, ages, persons, names = [], [], [], []
    for p in range(n_persons):
        person = {
            "skin": np.array([235.0, 190.0, 160.0]) * rng.uniform(0.45, 1.0),
            "hair": rng.uniform([20, 10, 0], [120, 90, 60]),
            "width": rng.uniform(-2, 2),
        }
        start = rng.uniform(0, max(1.0, max_age - 30))
        person_ages = np.sort(rng.uniform(start, min(max_age, start + 30), images_per_person))
        for age in np.rint(person_ages):
            pid = f"s{p:03d}"
            images.append(_face(rng, size, float(age), person))
            ages.append(age)
            persons.append(pid)
            names.append(f"{pid}A{int(age):02d}_{len(names):05d}.png")
    params = f"synthetic:{n_persons}:{images_per_person}:{size}:{max_age}:{seed}"
    return FaceArrays(
        images=np.stack(images),
        ages=np.array(ages, np.float32),
        persons=np.array(persons, dtype=str),
        names=np.array(names, dtype=str),
        methods=np.full(len(images), "synthetic", dtype="<U9"),
        key=hashlib.sha256(params.encode()).hexdigest(),
        meta={"synthetic": True, "params": params},
    )
