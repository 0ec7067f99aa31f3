"""Co-hashing recipe (PalmCohashNet): config, build(), and the loss step.

loss "csq" (default): sum over modalities of [centroid loss (per-bit BCE to the identity centroid, as in the
paper) + lambda_softmax * centroid softmax (cross-entropy over all centroids; ours, for fast training from
scratch) + lambda_quant * quantization loss], plus lambda_cross * the cross-modality term between the print and
vein codes of the batch.
loss "arcface": the per-bit and softmax centroid terms become one ArcFace term (additive angular margin) of each
code before tanh (same signs, no saturated tanh to stall it) against the fixed identity centroids, so both
modalities still land at one centroid; quantization and cross terms as above. Either loss may add
lambda_supcon * a supervised contrastive term over the relaxed codes of every modality in the batch (a print and
a vein of one person are positives of each other).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console

from biohash.errors import ConfigError
from biohash.train.recipes.base import Recipe, option, register_recipe
from biohash.train.runs import RunError

BITS = (16, 32, 64, 128, 256)
LOSSES = ("csq", "arcface")
TEACHER_PAIRS = ("all", "above")  # losses.DISTILL_PAIRS (torch loads with the model)


@dataclass
class CohashConfig:
    """Method settings of co-hashing (training settings live in train.FitConfig).

    share (beyond the paper, whose sub-networks share nothing: "none"): "head" reads both modalities'
    embeddings through one hash layer; on identity-disjoint synthetic palms it lowered cross-modal EER from
    about 30 % to 13 % at equal training. "all" uses one network for both modalities: at 10 epochs it gave
    cross 15 % against 23 % for "head", print and fused 0.3-0.4 points worse, vein 0.9 better.

    init: warm start from a trained co-hashing run folder, its checkpoint file, or a shipped model
    ("zoo:NAME", see biohash.train.zoo): every tensor whose name and shape agree is copied (backbones and reductions;
    the hash layer too when bits match); identity centroids never are (they belong to the new identities).

    loss, arc_scale, arc_margin, lambda_supcon, supcon_temperature: see the module docstring (ArcFace s = 30,
    m = 0.5 and supervised contrastive T = 0.07 as in CompNet / CCNet).

    per_identity > 0 draws batches of that many items of each identity (on generated data it also renders
    each identity once per batch).

    identity_flips (beyond the papers): the eight turns and mirror images of a square ROI look like eight
    other palms, so 2, 4 or 8 of them enter training as new identities (both modalities flipped alike). On
    CASIA 940 open set (38 training palms, 256 bits, arcface + supcon; bench/real_palm.py, three split seeds)
    validation EER fell from 5.64 to 3.13 % (4 flips) and 3.04 % (8), test EER from 7.65 to 5.32 and 5.49 %.

    teachers (beyond the papers): independently trained runs err on partly different pairs, so their averaged
    scores beat each (two real-palm runs: PolyU EER 1.46 / 0.77 -> 0.88 / 0.22 %, at twice the template);
    distillation puts that average in one student's code: lambda_teacher * the mean squared difference between
    the cosine similarities of the student's relaxed codes and the teachers' mean, over the batch's pairs.
    `compcode` as a teacher is the classic matcher itself (1 - its +-3-cell distance / 0.47): what it knows of
    palms whose principal lines look alike, taught without training a teacher first.
    """

    backbone: str = option("small", "registered backbone (small, res18, compnet_lite, ...)")
    bits: int = option(64, "code length: 16, 32, 64, 128 or 256")
    weights: str | None = option(None, "backbone weights: a local file, or imagenet (packaged with efficientnet_lite0)")
    lambda_quant: float = option(0.05, "quantization loss weight")
    lambda_softmax: float = option(1.0, "centroid-softmax weight (ours; 0 = paper's loss)")
    softmax_scale: float = option(16.0, "scale of the centroid softmax")
    lambda_cross: float = option(0.5, "cross-modality loss weight")
    cross_margin: float = option(0.25, "margin of the cross-modality loss")
    share: str = option("head", "none (paper: two sub-networks), head (one hash layer) or all (one network)")
    dropout: float = option(0.2, "dropout before the hash layer")
    grid: int = option(4, "side of the spatial head's pooling grid")
    init: str | None = option(None, "warm start: a trained run folder, or a shipped model zoo:NAME (biohash zoo "
                              "lists them)")
    loss: str = option("csq", "csq (per-bit centroid + softmax) or arcface (angular margin to the identity centroids)")
    arc_scale: float = option(30.0, "ArcFace scale s")
    arc_margin: float = option(0.5, "ArcFace margin m in radians")
    lambda_supcon: float = option(0.0, "supervised contrastive weight (CCNet: 0.2)")
    supcon_temperature: float = option(0.07, "supervised contrastive temperature")
    per_identity: int = option(0, "captures of each identity per batch (P x K); 0 = shuffled batches, or 2 "
                               "when the supervised contrastive term is on")
    lambda_binary: float = option(0.0, "weight of an ArcFace term on the signed codes (straight-through "
                                  "gradient): trains the Hamming similarity itself (ours)")
    test_shifts: int = option(0, "encoding averages the embeddings of the image and four copies rolled by this "
                              "many pixels (0 = off): fewer unsettled bits, 5x the encoding time")
    test_views: str = option("cross", "the copies --test-shifts averages: cross (the image and four axis rolls) or "
                             "square (the 3 x 3 grid of rolls: 9x the encoding time)")
    identity_flips: int = option(1, "1, 2, 4 or 8: every training palm also mirrored, upside down and turned, "
                                 "each copy a new identity (more identities from few real palms)")
    teachers: str | None = option(None, "distil from trained co-hashing runs (run folders, comma-separated) or "
                                  "compcode: the student's code similarities learn the teachers' mean over every "
                                  "batch pair")
    lambda_teacher: float = option(30.0, "weight of that similarity distillation term (with --teachers; about "
                                   "ArcFace's scale, so neither term drowns the other)")
    parts: int = option(0, "blocks per side of the spatial grid that each get a hash layer and an ArcFace term of "
                        "their own in training (0 = off; 2: four quadrants): every region must tell palms apart")
    lambda_parts: float = option(0.5, "weight of the mean of those part terms (with --parts)")
    teacher_pairs: str = option("all", "the pairs that term reads: all, or above (only pairs the teachers call "
                                "different palms and the student scores higher, averaged over those: look-alikes)")
    teacher_data: str | None = option(None, "unlabeled palms the same term is also learnt on, NAME:ROOT[:KEY=VALUE...] "
                                      "as --also (';'-separated): the training palms of each database's split of "
                                      "the run's seed, labels never read (with --teachers or --lambda-orientation)")
    lambda_orientation: float = option(0.0, "weight of an auxiliary term: the feature map predicts CompCode's "
                                       "orientation of every cell of its 32 x 32 grid (training only; also on "
                                       "--teacher-data's unlabeled palms): the trunk keeps the fine lines (0 = off)")
    orientation_head: str = option("map", "what predicts that grid: map (1x1 on the feature map), map3 (a 3x3 "
                                   "layer before it) or embedding (linear from the embedding the code reads)")

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; expected one of: {', '.join(LOSSES)}")
        if self.init is not None and self.weights is not None:
            raise ConfigError("give either weights (backbone initialisation) or init (a trained run), not both")
        if self.identity_flips not in (1, 2, 4, 8):
            raise ConfigError(f"identity_flips must be 1, 2, 4 or 8, got {self.identity_flips}")
        if self.lambda_binary < 0:
            raise ConfigError(f"lambda_binary must be >= 0, got {self.lambda_binary}")
        if self.test_shifts < 0:
            raise ConfigError(f"test_shifts must be >= 0 pixels, got {self.test_shifts}")
        if self.test_views not in ("cross", "square"):  # models.hashnet.TEST_VIEWS (torch loads with the model)
            raise ConfigError(f"test_views must be one of: cross, square; got {self.test_views!r}")
        if self.parts < 0 or self.lambda_parts < 0:
            raise ConfigError(f"parts and lambda_parts must be >= 0, got {self.parts} and {self.lambda_parts}")
        if self.lambda_teacher < 0:
            raise ConfigError(f"lambda_teacher must be >= 0, got {self.lambda_teacher}")
        if self.teachers is not None and not [t for t in self.teachers.split(",") if t.strip()]:
            raise ConfigError("teachers names no run folder (give RUN[,RUN...])")
        if self.teacher_pairs not in TEACHER_PAIRS:
            raise ConfigError(f"teacher_pairs must be one of: {', '.join(TEACHER_PAIRS)}; got {self.teacher_pairs!r}")
        if self.lambda_orientation < 0:
            raise ConfigError(f"lambda_orientation must be >= 0, got {self.lambda_orientation}")
        if self.orientation_head not in ("map", "map3", "embedding"):  # models.hashnet.ORIENTATION_HEADS
            raise ConfigError(f"orientation_head must be one of: map, map3, embedding; got {self.orientation_head!r}")
        if self.teacher_data is not None and not self.teachers and not self.lambda_orientation:
            raise ConfigError("teacher_data is what the teachers' similarities (or the orientation term) are learnt "
                              "on: give --teachers or --lambda-orientation too")
        if self.per_identity < 0:
            raise ConfigError(f"per_identity must be >= 0, got {self.per_identity}")
        if self.bits not in BITS:
            raise ConfigError(f"bits must be one of {', '.join(map(str, BITS))} (the code lengths the hash layer, "
                             f"store and matchers are built and tested for), got {self.bits}")


if TYPE_CHECKING:  # torch loads when a model is built, so `biohash train cohash --help` stays instant
    import torch

    from biohash.train.models.cohash import CoHashNet
    from biohash.train.recipes.teachers import Teacher

    Step = Callable[[CoHashNet, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def build(config: CohashConfig, n_classes: int, modalities: tuple[str, ...] = ("print", "vein"),
          seed: int = 0, *, image_size: int = 128, split_seed: int = 0) -> tuple[CoHashNet, Step]:
    """The model and its loss step. A batch holds one image tensor per modality and `label` (B,); `image_size`
    and `split_seed` choose the unlabeled palms of `teacher_data` (recipes.teachers.unlabeled_pool)."""
    from biohash.train.models.backbones import BACKBONES
    from biohash.train.models.cohash import CoHashNet
    from biohash.train.recipes.teachers import load_teachers, unlabeled_pool

    BACKBONES.canonical(config.backbone)  # fail early, listing valid names
    model = CoHashNet(config.backbone, config.bits, n_classes, modalities=modalities, weights=config.weights,
                      seed=seed, share=config.share, dropout=config.dropout, grid=config.grid,
                      test_shifts=config.test_shifts, test_views=config.test_views, parts=config.parts,
                      orientation=config.orientation_head if config.lambda_orientation > 0 else "")
    if config.init is not None:
        warm_start(model, config.init)
    teachers = load_teachers(config.teachers, modalities) if config.teachers and config.lambda_teacher > 0 else []
    pool = unlabeled_pool(config.teacher_data, modalities, image_size, split_seed) if config.teacher_data and \
        (teachers or config.lambda_orientation > 0) else {}
    return model, loss_step(config, teachers, pool)


def loss_step(config: CohashConfig, teachers: list[Teacher] | None = None,
              pool: dict[str, torch.Tensor] | None = None) -> Step:
    """The loss step (net, batch) -> {"loss": total, parts...} of the module docstring; with teachers, plus a
    similarity distillation term per modality, and one on as many unlabeled palms of `pool` as the batch holds;
    with lambda_orientation, CompCode's orientations as a target on both (recipes.orientation)."""
    import torch

    from biohash.train.recipes.orientation import orientation_loss
    from biohash.train.recipes.teachers import teacher_similarity

    losses, cross, supcon, distill = _losses(config)
    orienting = config.lambda_orientation > 0

    def step(net: CoHashNet, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        rows = _present_rows(batch, net.modalities)  # None: every item has every modality
        pre, part_pre, orientation = _pre_codes(net, batch, rows, extras=config.parts > 0 or orienting)
        codes = {m: torch.tanh(z) for m, z in pre.items()}
        own = {m: labels if rows[m] is None else labels[rows[m]] for m in codes}
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        for m, z in pre.items():
            terms.update(_identity_terms(config, losses, m, z, own[m], centroids=net.centroids,
                                         parts=part_pre.get(m)))
            images = batch[m] if rows[m] is None else batch[m][rows[m]]
            if teachers:
                terms[f"teacher_{m}"] = (config.lambda_teacher, distill(codes[m], teacher_similarity(teachers, images, m)))
            if orienting:
                terms[f"orientation_{m}"] = (config.lambda_orientation, orientation_loss(orientation[m], images))
        terms.update(_unlabeled_terms(config, net, teachers or [], pool or {}, n=len(labels), distill=distill))
        if len(net.modalities) == 2 and config.lambda_cross > 0:
            a, b, both = _paired(codes, rows, labels, net.modalities)
            if len(a):
                terms["cross"] = (config.lambda_cross, cross(a, b, both, both))
        if config.lambda_supcon > 0:
            terms["supcon"] = (config.lambda_supcon, supcon(torch.cat(list(codes.values())),
                                                            torch.cat(list(own.values()))))
        total = sum((weight * value for weight, value in terms.values()), labels.new_zeros((), dtype=torch.float32))
        return {"loss": total, **{name: value for name, (_, value) in terms.items()}}

    return step


def _losses(config: CohashConfig) -> tuple[dict[str, Any], Any, Any, Any]:
    """The step's loss modules: the identity losses by name, and the cross-modality, supervised contrastive and
    similarity distillation terms."""
    from biohash.train.losses import (
        ArcFaceLoss,
        CentroidLoss,
        CentroidSoftmaxLoss,
        CrossModalityLoss,
        QuantizationLoss,
        SimilarityDistillLoss,
        SupConLoss,
    )

    losses = {"centroid": CentroidLoss(), "quant": QuantizationLoss(), "softmax": CentroidSoftmaxLoss(config.softmax_scale),
              "arcface": ArcFaceLoss(config.arc_scale, config.arc_margin)}
    return (losses, CrossModalityLoss(config.cross_margin), SupConLoss(config.supcon_temperature),
            SimilarityDistillLoss(config.teacher_pairs))


def _unlabeled_terms(config: CohashConfig, net: Any, teachers: list[Any], pool: dict[str, Any], *, n: int,
                     distill: Any) -> dict[str, tuple[float, Any]]:
    """The label-free terms on n unlabeled palms of other databases per modality of `pool`: the teachers'
    similarities and CompCode's orientations, where the run trains them."""
    from biohash.train.recipes.orientation import unlabeled_orientation
    from biohash.train.recipes.teachers import unlabeled_gap

    terms = {}
    for m, images in pool.items():
        if teachers:
            terms[f"teacher_unlabeled_{m}"] = (config.lambda_teacher,
                                               unlabeled_gap(net, teachers, m, images, n=n, distill=distill))
        if config.lambda_orientation > 0:
            terms[f"orientation_unlabeled_{m}"] = (config.lambda_orientation, unlabeled_orientation(net, m, images, n=n))
    return terms


def _pre_codes(net: Any, batch: dict[str, Any], rows: dict[str, Any], *,
               extras: bool) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, Any]]:
    """Each modality's pre-codes of its present rows and, with `extras`, its part pre-codes and orientation
    logits from the same backbone pass (HashNet.forward_training)."""
    pre, part_pre, orientation = {}, {}, {}
    for m, r in rows.items():
        if r is not None and not len(r):
            continue
        hn, x = net.net(m), batch[m] if r is None else batch[m][r]
        if not extras:
            pre[m] = hn.forward_pre_code(x)
            continue
        pre[m], part_pre[m], orientation[m] = hn.forward_training(x)
    return pre, part_pre, orientation


def _identity_terms(config: CohashConfig, losses: dict[str, Any], m: str, z: Any, labels: Any,
                    *, centroids: Any, parts: list[Any] | None = None) -> dict[str, tuple[float, Any]]:
    """One modality's (weight, value) loss terms towards the identity centroids, from its pre-codes z (and
    the mean ArcFace term of its part pre-codes, where the run trains parts)."""
    import torch

    h = torch.tanh(z)
    terms = {f"quant_{m}": (config.lambda_quant, losses["quant"](h))}
    if parts:
        terms[f"parts_{m}"] = (config.lambda_parts,
                               torch.stack([losses["arcface"](p, labels, centroids) for p in parts]).mean())
    if config.lambda_binary > 0:  # sign(z) forward, identity backward: the code as matched, with a margin
        signed = z + (torch.sign(z) - z).detach()
        terms[f"binary_{m}"] = (config.lambda_binary, losses["arcface"](signed, labels, centroids))
    if config.loss == "arcface":
        terms[f"arcface_{m}"] = (1.0, losses["arcface"](z, labels, centroids))
        return terms
    terms[f"centroid_{m}"] = (1.0, losses["centroid"](h, labels, centroids))
    if config.lambda_softmax > 0:
        terms[f"softmax_{m}"] = (config.lambda_softmax, losses["softmax"](h, labels, centroids))
    return terms


def _present_rows(batch: dict[str, Any], modalities: tuple[str, ...]) -> dict[str, Any]:
    """Per modality, the batch rows holding a real image (a joined print-only database leaves vein out), or
    None for all of them."""
    present = batch.get("present")
    if present is None or bool(present.all()):
        return {m: None for m in modalities}
    return {m: present[:, j].nonzero().flatten() for j, m in enumerate(modalities)}


def _paired(codes: dict[str, Any], rows: dict[str, Any], labels: Any,
            modalities: tuple[str, ...]) -> tuple[Any, Any, Any]:
    """The two modalities' codes of the items that hold both, row for row, and those items' labels."""
    first, second = modalities
    a, b = codes.get(first), codes.get(second)
    if a is None or b is None:
        return labels[:0], labels[:0], labels[:0]
    if rows[first] is None:
        return a, b, labels
    ra, rb = rows[first].tolist(), rows[second].tolist()
    common = sorted(set(ra) & set(rb))
    ia, ib = {r: k for k, r in enumerate(ra)}, {r: k for k, r in enumerate(rb)}
    return a[[ia[r] for r in common]], b[[ib[r] for r in common]], labels[common]


def warm_start(model: CoHashNet, source: str) -> int:
    """Copy matching tensors (same name and shape, centroids excepted) from a run's best checkpoint; returns
    how many were copied and refuses a source that shares nothing."""
    from pathlib import Path

    import torch

    from biohash.train.zoo import resolve

    path = Path(resolve(source))
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"init: no checkpoint at {path} (give a run folder or a .pt file)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("model", state)
    own = model.state_dict()
    copied = {k: v for k, v in state.items() if k != "centroids" and k in own and own[k].shape == v.shape}
    if not copied:
        raise ConfigError(f"init: {path} has no tensor matching this model (other backbone or modalities?)")
    model.load_state_dict(copied, strict=False)
    return len(copied)


def _one_branch_warning(data: Any, modalities: tuple[str, ...]) -> None:
    if len(modalities) != 1 or modalities[0] not in ("print", "vein"):
        return
    other = "print" if modalities[0] == "vein" else "vein"
    hint = {"casia-ms": "add a visible band, e.g. -o bands=460,940 (460 nm shows the print)"}.get(
        data.dataset, "select the other modality with the adapter's options (biohash datasets lists them)")
    Console().print(f"[bold yellow]warning: only {modalities[0]} images were found: this co-hash run has one "
                    f"branch, no {other} branch, no fused or cross mode; {hint}")


def branch_modalities(dataset: Any, data: Any) -> tuple[str, ...]:
    """The modality branches a dataset gives co-hashing: print and vein where present, else its one other
    modality (ocular, dorsal); more than one other modality must be chosen with an adapter option."""
    modalities = tuple(m for m in ("print", "vein") if m in dataset.modalities())
    if not modalities and len(dataset.modalities()) == 1:
        modalities = tuple(dataset.modalities())
    if not modalities:
        raise RunError(f"dataset {data.dataset!r} has no print or vein samples and more than one other modality "
                       f"(found {', '.join(dataset.modalities())}); select one with --option")
    _one_branch_warning(data, modalities)
    return modalities


@register_recipe
class CohashRecipe(Recipe):
    """Train PalmCohashNet: one hashing network per modality towards shared identity centroids."""

    name = "cohash"
    config = CohashConfig

    def training_set(self, method, dataset, split, data, seed):
        from biohash.train.data.loaders import PairedTrainSet

        return PairedTrainSet.for_run(dataset, split.train, branch_modalities(dataset, data), data, seed,
                                      identity_flips=method.identity_flips)

    def build(self, method, train_set, seed):
        model, step = build(method, len(train_set.classes), train_set.modalities, seed=seed,
                            image_size=train_set.size, split_seed=train_set.split_seed)
        return model, step, {"n_classes": len(train_set.classes), "modalities": list(train_set.modalities)}

    def batch_identities(self, method):
        return method.per_identity or (2 if method.lambda_supcon > 0 else 0)

    def rebuild(self, config):
        settings = dict(config["model"])
        n_classes, modalities = settings.pop("n_classes"), tuple(settings.pop("modalities"))
        settings["init"] = None  # a trained run loads its own checkpoint; the warm-start source may be gone
        settings["teachers"] = settings["teacher_data"] = None  # and needs no teacher or their palms to encode
        seed = (config.get("fit") or {}).get("seed", 0)
        return build(CohashConfig(**settings), n_classes, modalities, seed=seed)[0]
