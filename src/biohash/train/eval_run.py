"""Evaluating a trained run: its selected model on the test (or validation) split of its protocol, a
cross-domain target, or each database of a joined run apart; score files, metrics, plots and report."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console

from biohash.train.data.config import DataConfig, open_split
from biohash.train.recipes.base import load_model
from biohash.train.runs import RunError, read_config, write_json


def note_skipped(out: Path, dataset: Any) -> int:
    """Photos left out because their ROI failed: counted on the console, listed in OUT/roi_failures.json."""
    if not getattr(dataset, "skipped", None):
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "roi_failures.json", dict(dataset.skipped))
    Console().print(f"[yellow]skipped {len(dataset.skipped)} of {len(dataset.skipped) + len(dataset.samples)} "
                  f"images whose ROI failed (listed in {out / 'roi_failures.json'}; -o on_roi_failure=fail "
                  f"stops instead)")
    return len(dataset.skipped)


def _cross_domain_check(source: DataConfig, target: DataConfig) -> None:
    """Refuse a cross-domain evaluation whose test identities were trained on (same dataset, other options)."""
    if target.dataset != source.dataset or (target.root != source.root and target.dataset != "synthetic"):
        return  # another adapter or another folder: other people
    if (target.root, target.options, target.protocol, target.seed) == (source.root, source.options,
                                                                       source.protocol, source.seed):
        raise RunError("the target is the run's own data; drop --dataset to evaluate in-domain")
    trained = {s.identity for s in open_split(source)[1].train}
    tested = {s.identity for s in open_split(target)[1].test_probe}
    if trained & tested:
        raise RunError(f"{len(trained & tested)} test identities of the target were trained on; choose a target "
                       f"split whose test identities are unseen (e.g. the same --protocol and --seed)")


def _evaluation_data(run_dir: Path, data: DataConfig, protocol: str | None, target: DataConfig | None) -> DataConfig:
    """The data an evaluation scores: the run's own (under its protocol only) or a cross-domain target."""
    if target is not None:
        for part in data.parts():  # every database the run trained on
            _cross_domain_check(part, target)
        return dataclasses.replace(target, image_size=data.image_size)
    if protocol is not None and protocol != data.protocol and protocol == "all":
        raise RunError("--protocol all scores every identity, training ones included: use it on another folder "
                       "(biohash eval RUN --root OTHER --protocol all)")
    if protocol is not None and protocol != data.protocol:
        raise RunError(f"{run_dir} was trained under the {data.protocol!r} protocol; evaluating it under "
                       f"{protocol!r} would mix training and test samples. Train a run with --protocol {protocol}")
    return data


def evaluate_run(run_dir: Path, *, protocol: str | None = None, split_name: str = "test",
                 target: DataConfig | None = None, device: str = "auto",
                 test_shifts: int | None = None, test_views: str | None = None) -> dict[str, dict[str, float]]:
    """Evaluate a run's selected model on the test (or validation) split of its protocol: score files,
    metrics.json, plots and report.md under run_dir/eval/PROTOCOL-SPLIT/. With `target`, evaluate across
    domains instead: the model as trained, on another dataset's (or aspect's) split, under
    run_dir/eval/DATASET-PROTOCOL-SPLIT/; test identities the run trained on are refused. A run of joined
    databases is scored per database (eval/NAME-PROTOCOL-SPLIT/, never one database's probes against another's
    gallery); the first database's figures are returned, every one's are in metrics.json. `test_shifts` and
    `test_views` override the run's shift averaging at encoding (models.hashnet), into folders ...-shiftsN
    (cross) or ...-squareN (square)."""
    config = read_config(run_dir)
    data = _evaluation_data(run_dir, DataConfig(**config["data"]), protocol, target)
    dataset, split = open_split(data)
    gallery, probe = (split.test_gallery, split.test_probe) if split_name == "test" else (split.val_gallery,
                                                                                           split.val_probe)
    from biohash.train.data.multi import part_names, parts
    from biohash.train.devices import resolve_device

    model: Any = load_model(run_dir, config).to(resolve_device(device))
    suffix = override_shifts(model, test_shifts, test_views)
    prefix = "" if target is None else f"{data.dataset}-{'-'.join(str(v) for v in data.options.values() if v is not True)}-"
    by_part, galleries = parts(probe), parts(gallery)
    own: dict[str | None, DataConfig] = {None: data}
    if data.also:
        own = dict(zip(part_names([c.dataset for c in data.parts()]), data.parts()))
    results = {}
    for name, part_probe in by_part.items():
        part_data = own[name]  # its own protocol
        folder = f"{prefix.replace('--', '-')}{name + '-' if name else ''}{part_data.protocol}-{split_name}{suffix}"
        results[name] = _evaluate_into(run_dir / "eval" / folder, run_dir, config, model, dataset=dataset,
                                       gallery=galleries.get(name, []), probe=part_probe, data=part_data,
                                       split_name=split_name, part=name, target=target)
    if len(results) > 1:
        first = next(iter(results.values()))
        write_json(run_dir / "metrics.json", {"protocol": split.protocol, "split": split_name,
                                              "databases": {n: r for n, r in results.items()},
                                              **({"training": first["training"]} if "training" in first else {})})
    return next(iter(results.values()))["modes"]


def override_shifts(model: Any, test_shifts: int | None, test_views: str | None) -> str:
    """Set every branch's test-time shift averaging where asked; the evaluation folder's suffix."""
    from biohash.train.models.hashnet import TEST_VIEWS

    if test_views is not None and test_views not in TEST_VIEWS:
        raise RunError(f"test_views must be one of: {', '.join(TEST_VIEWS)}; got {test_views!r}")
    if test_shifts is None and test_views is None:
        return ""
    for m in model.modalities:
        net = model.net(m)
        net.test_shifts = net.test_shifts if test_shifts is None else test_shifts
        net.test_views = test_views or net.test_views
    net = model.net(model.modalities[0])
    return shifts_suffix(net.test_shifts, net.test_views)


def shifts_suffix(test_shifts: int | None, test_views: str | None = "cross") -> str:
    """The evaluation folder's suffix for a test-time shift averaging asked for (-shiftsN for cross, -squareN; N may
    be 0), none where none was asked for (None): the run as trained."""
    if test_shifts is None:
        return ""
    return f"-{'square' if test_views == 'square' else 'shifts'}{test_shifts}"


def unfinished_training(run_dir: Path, config: dict[str, Any]) -> str | None:
    """A line saying training stopped early (history.json ends before the configured epochs), else None: a
    half-trained run's figures must not read as the method's."""
    import json

    path = run_dir / "history.json"
    planned = int((config.get("fit") or {}).get("epochs", 0) or 0)  # PTQ runs have no fit section
    if not path.is_file() or not planned:
        return None
    history = json.loads(path.read_text())
    done = max((int(r.get("epoch", 0)) for r in history), default=0)
    if done >= planned:
        return None
    return (f"stopped after epoch {done} of {planned}: not finished (continue with --resume), figures are of a "
            f"half-trained model")


def _evaluate_into(out: Path, run_dir: Path, config: dict[str, Any], model: Any, *, dataset: Any, gallery: list,
                   probe: list, data: DataConfig, split_name: str, part: str | None,
                   target: DataConfig | None) -> dict[str, Any]:
    """Score one gallery and its probes; write score files, metrics.json and report.md into `out` (and the
    report at the top of the run folder); returns the metrics summary."""
    import json

    from biohash.match.scores import write_score_file
    from biohash.train.evaluate import evaluate
    from biohash.train.report import write_report

    scores, per_mode = evaluate(model, dataset, gallery, probe, data.image_size, floats=bool(model.modalities))
    out.mkdir(parents=True, exist_ok=True)
    skipped = note_skipped(out, dataset)
    for mode, s in scores.items():
        write_score_file(s, out / f"scores-{mode}.txt")
    summary = {"protocol": data.protocol, "split": split_name, "bits": config["model"].get("bits"),
               "dataset": part or data.dataset, "options": data.options, "cross_domain": target is not None,
               "identities": len({s.identity for s in probe}), "modes": per_mode}
    unfinished = unfinished_training(run_dir, config)
    if unfinished:
        summary["training"] = unfinished
    write_json(out / "metrics.json", summary)
    history_path = run_dir / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else None
    kind = {"open": "identity-disjoint", "closed": "per-identity sample split"}.get(
        data.protocol, "id-order halves, one enrolled image per test identity")
    context = {"run": run_dir.name, "protocol": f"{data.protocol} set ({kind})", "split": split_name,
               "dataset": summary["dataset"], "backbone": config["model"].get("backbone", "-"),
               "bits": config["model"].get("bits", "float features"), "probe identities": summary["identities"]}
    if skipped:
        context["images skipped (no ROI)"] = f"{skipped}, listed in roi_failures.json"
    if unfinished:
        context["training"] = unfinished
    report = write_report(out, f"biohash co-hashing evaluation: {run_dir.name}", scores, per_mode, context, history=history)
    # the latest evaluation also sits at the top of the run folder, its plots linked from there
    rel = out.relative_to(run_dir).as_posix()
    (run_dir / "report.md").write_text(report.read_text().replace("](", f"]({rel}/"))
    write_json(run_dir / "metrics.json", summary)
    return summary
