"""bench/real_palm.py: its unlabeled pool never holds the hands a set trains or is scored on (under another crop or
band), and its runs train on the device and precision its command line asks for."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def real_palm():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("real_palm_bench", BENCH / "real_palm.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("trained, kept", [
    (["casia-valley"], ["polyu-ms-full", "tongji-full"]),  # casia-ms-roi holds the valley set's hands
    (["casia-roi"], ["polyu-ms-full", "tongji-full"]),
    (["polyu-bands"], ["casia-ms-roi", "tongji-full"]),
    (["polyu-paper"], ["casia-ms-roi", "tongji-full"]),
    (["tongji"], ["casia-ms-roi", "polyu-ms-full"]),
    (["polyu", "tongji"], ["casia-ms-roi"]),
])
def test_the_unlabeled_pool_holds_no_palm_of_the_databases_a_set_trains_on(real_palm, trained, kept):
    specs = real_palm.other_palms(trained, Path("/data")).split(";")
    assert [Path(s.split(":")[1]).name for s in specs] == kept


def test_a_set_that_takes_every_database_has_no_unlabeled_pool(real_palm):
    with pytest.raises(SystemExit, match="no real folder is left"):
        real_palm.other_palms(["polyu", "tongji", "casia-roi"], Path("/data"))  # joined-no-casia: scored on CASIA


def test_the_bench_trains_on_the_device_and_precision_asked_for(real_palm):
    args = real_palm.parser().parse_args(["--epochs", "3", "--seed", "2", "--device", "cpu", "--amp", "bf16"])
    settings = {"backbone": "small_gabor", "fit": {"ema": 0.997, "epochs": 28}}
    fit = real_palm.fit_config(args, settings)
    assert (fit.device, fit.amp, fit.seed, fit.ema) == ("cpu", "bf16", 2, 0.997)
    assert fit.epochs == 28, "a variant's own schedule wins over --epochs"
    assert "fit" not in settings, "the fit settings are taken out of the model's"
    assert real_palm.fit_config(real_palm.parser().parse_args([]), {}).device == "auto"


def test_the_bench_refuses_an_unknown_precision(real_palm, capsys):
    with pytest.raises(SystemExit):
        real_palm.parser().parse_args(["--amp", "fp8"])
    assert "invalid choice" in capsys.readouterr().err
