"""What a co-hashing student reads from its teachers: the frozen runs, their similarity matrices, and unlabeled
palms of other databases whose pairs the similarity term is also learnt on.

A teacher is a trained run or CompCode itself (`compcode`: recipes.compcode_teacher), the classic matcher that
needs no training. The teachers' similarities on their own training palms say little beyond the labels (same palm
or not); on palms no one trained on they carry what an ensemble knows about new people, the open-set case. Those
palms come from other databases' training splits (`teacher_data`), their labels never read.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

from biohash.errors import BiohashError
from biohash.train.runs import RunError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from biohash.train.models.cohash import CoHashNet
    from biohash.train.recipes.compcode_teacher import CompCodeTeacher

    Teacher = CoHashNet | CompCodeTeacher

POOL_LIMIT = 4000  # unlabeled images kept per modality (float16, 128 px: 131 MB)


def load_teachers(sources: str, modalities: tuple[str, ...]) -> list[Teacher]:
    """The teachers a student distils from (comma-separated): frozen co-hashing runs (folders), each with the
    student's modalities, or `compcode`."""
    from biohash.train.recipes.base import load_model
    from biohash.train.recipes.compcode_teacher import CompCodeTeacher

    teachers: list[Teacher] = []
    for source in (s.strip() for s in sources.split(",") if s.strip()):
        if source == CompCodeTeacher.name:
            teachers.append(CompCodeTeacher())
            continue
        path = Path(source)
        if not (path / "config.yaml").is_file():
            raise RunError(f"teacher {source!r} is not a run folder (no config.yaml there)")
        teacher = load_model(path)  # in eval mode, which nothing in training changes: it is not the student
        has = getattr(teacher, "modalities", ())
        missing = [m for m in modalities if m not in has]
        if missing:
            raise RunError(f"teacher {source!r} has no {', '.join(missing)} branch (it has: {', '.join(has)})")
        teachers.append(cast("CoHashNet", teacher.requires_grad_(False)))
    return teachers


def teacher_similarity(teachers: list[Teacher], x: torch.Tensor, modality: str) -> torch.Tensor:
    """The teachers' mean similarity matrix of a batch: a run's cosine of its relaxed codes (no shifts),
    CompCode's 1 - distance / UNRELATED."""
    import torch

    from biohash.train.losses import cosine_similarities
    from biohash.train.recipes.compcode_teacher import CompCodeTeacher

    with torch.no_grad():
        total = x.new_zeros((len(x), len(x)))
        for teacher in teachers:
            if isinstance(teacher, CompCodeTeacher):
                total += teacher.similarity(x, modality).to(total)
                continue
            teacher.to(x.device)
            total += cosine_similarities(torch.tanh(teacher.net(modality).forward_pre_code(x)))
    return total / len(teachers)


def unlabeled_pool(specs: str, modalities: tuple[str, ...], size: int, split_seed: int,
                   limit: int = POOL_LIMIT) -> dict[str, torch.Tensor]:
    """Standardised images (n, 1, size, size), float16, per student modality, from the training palms of each
    database in `specs` (NAME:ROOT[:KEY=VALUE...] as --also, ';'-separated: option values such as bands=460,940
    hold commas) under its open split of `split_seed`, so the same seed's validation and test palms of every
    database stay unseen. At most `limit` per modality, spread evenly over the list; a modality no database holds
    is left out."""
    import numpy as np
    import torch

    from biohash.imaging.transforms import standardize
    from biohash.train.data.config import DataConfig, open_split
    from biohash.train.data.multi import check_part, parse_spec

    found: dict[str, list] = {m: [] for m in modalities}
    for spec in (s.strip() for s in specs.split(";") if s.strip()):
        try:
            part = parse_spec(spec)
            check_part(part)
            data = DataConfig(**{"protocol": "open", **part, "seed": split_seed, "image_size": size})
            dataset, split = open_split(data)
        except BiohashError as err:  # which of several specs, and that it is teacher_data's
            raise RunError(f"teacher_data {spec!r}: {str(err).strip(chr(39))}") from None
        for m in modalities:
            found[m] += [(dataset, s) for s in split.train if s.modality == m]
    if not any(found.values()):
        raise RunError(f"teacher_data {specs!r} holds no training image of {', '.join(modalities)}")
    pool = {}
    for m, items in found.items():
        if items:
            keep = np.linspace(0, len(items) - 1, min(limit, len(items))).round().astype(int)
            images = [standardize(items[k][0].load(items[k][1]), size) for k in keep]
            pool[m] = torch.from_numpy(np.stack(images)).to(torch.float16)
    return pool


def draw(pool: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    """n images of a pool at random (all of them, in order, when it holds no more), as `like`'s dtype and device."""
    import torch

    picked = pool if len(pool) <= n else pool[torch.randperm(len(pool))[:n]]
    return picked.to(device=like.device, dtype=like.dtype)


def unlabeled_gap(net: CoHashNet, teachers: list[Teacher], modality: str, pool: torch.Tensor, *, n: int,
                  distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The similarity distillation term (`distill`: losses.SimilarityDistillLoss) on a draw of n unlabeled palms,
    batch norm statistics left to the labeled palms."""
    import torch

    branch = net.net(modality)
    x = draw(pool, n, like=next(branch.parameters()))
    with batch_norm_frozen(branch):
        codes = torch.tanh(branch.forward_pre_code(x))
    return distill(codes, teacher_similarity(teachers, x, modality))


@contextmanager
def batch_norm_frozen(module: nn.Module) -> Iterator[None]:
    """Batch norm normalises by the batch as in training but its running statistics stay as they were: images of
    another database must not shift the statistics the student is evaluated with."""
    from torch import nn

    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum
