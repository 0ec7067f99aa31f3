"""Database adapters: parsed on the real files in ../shared/data, or on tiny fixtures written here for the
databases that are not present; bad paths and corrupt images give clear errors."""
from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from biohash.train.data.config import DataConfig, open_split
from biohash.train.data.datasets import DatasetError, open_dataset


def _write(path, img=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(len(str(path))).integers(0, 255, (40, 40), dtype=np.uint8) if img is None else img
    assert cv2.imwrite(str(path), img)
    return path


def test_casia_940_full_photos(shared_data):
    ds = open_dataset("casia-ms", root=str(shared_data / "casia-ms"), roi="none")
    assert len(ds.samples) == 402 and len(ds.identities()) == 67
    assert ds.modalities() == ["vein"] and {s.band for s in ds.samples} == {"940"}
    assert Counter(s.identity for s in ds.samples).most_common(1)[0][1] == 6
    assert ds.load(ds.samples[0]).shape == (576, 768)


def test_casia_loads_palm_rois_and_rejects_unknown_bands(shared_data):
    ds = open_dataset("casia-ms", root=str(shared_data / "casia-ms"), bands="940")
    roi = ds.load(ds.samples[0])
    assert roi.shape == (128, 128) and roi.dtype == np.uint8 and roi.std() > 5
    with pytest.raises(DatasetError, match="unknown CASIA band 123"):
        open_dataset("casia-ms", root=str(shared_data / "casia-ms"), bands="123")
    with pytest.raises(DatasetError, match="no images matched .*bands 460"):
        open_dataset("casia-ms", root=str(shared_data / "casia-ms"), bands="460")


def test_casia_bands_map_to_print_and_vein(tmp_path):
    for band in ("460", "940", "WHT"):
        _write(tmp_path / f"003_r_{band}_02.jpg")
    ds = open_dataset("casia-ms", root=str(tmp_path), bands=["460", "940", "wht"], roi="none")
    assert {(s.band, s.modality) for s in ds.samples} == {("460", "print"), ("940", "vein"), ("wht", "print")}
    assert {s.identity for s in ds.samples} == {"003r"} and {s.hand for s in ds.samples} == {"r"}


def test_polyu_pairs_green_and_nir_captures(shared_data):
    ds = open_dataset("polyu", root=str(shared_data / "polyu-ms"))
    assert len(ds.samples) == 240 and len(ds.identities()) == 10
    keys = {m: {(s.identity, s.session, s.capture) for s in ds.samples if s.modality == m} for m in ("print", "vein")}
    assert keys["print"] == keys["vein"] and len(keys["print"]) == 120
    assert Counter(s.session for s in ds.samples) == {1: 120, 2: 120}


def test_polyu_full_database_band_folders(tmp_path):
    for band in ("Red", "NIR"):
        _write(tmp_path / band / "001" / "1_01_s.bmp")
        _write(tmp_path / band / "001" / "2_03_s.bmp")
    ds = open_dataset("polyu-ms", root=str(tmp_path), bands="red,nir")
    assert sorted((s.band, s.session, s.capture) for s in ds.samples) == [
        ("nir", 1, 1), ("nir", 2, 3), ("red", 1, 1), ("red", 2, 3)]


def test_tongji_palm_major_numbering(shared_data):
    ds = open_dataset("tongji", root=str(shared_data / "tongji"))
    assert len(ds.samples) == 200 and len(ds.identities()) == 10
    by_id = ds.by_identity()
    assert all(Counter(s.session for s in group) == {1: 10, 2: 10} for group in by_id.values())
    eleventh = next(s for s in ds.samples if s.path.endswith("session1/00011.bmp"))
    assert (eleventh.identity, eleventh.capture) == ("0002", 0)


def test_tjppv_pairs_print_and_vein(tmp_path):
    for folder in ("palmprint", "palmvein"):
        for n in range(1, 21):
            _write(tmp_path / folder / "session1" / f"{n:05d}.bmp")
    ds = open_dataset("tjppv", root=str(tmp_path))
    assert ds.modalities() == ["print", "vein"] and len(ds.identities()) == 2
    assert Counter((s.identity, s.modality) for s in ds.samples)[("0002", "vein")] == 10


def test_xjtu_up_subsets_and_keypoint_rois(tmp_path):
    img = np.full((300, 300), 90, np.uint8)
    for sub in ("IF", "HN"):
        path = _write(tmp_path / sub / "7_L" / "a.jpg", img)
        pts = np.zeros((14, 2))
        pts[0], pts[12] = (100, 150), (200, 150)  # palm sides, L = 100
        pts[3], pts[6], pts[9] = (120, 100), (150, 100), (180, 100)
        path.with_suffix(".txt").write_text("\n".join(f"{x} {y}" for x, y in pts))
    _write(tmp_path / "SN" / "8" / "b.jpg")
    ds = open_dataset("xjtu-up", root=str(tmp_path), subsets="if,hn", roi="keypoints", size=32)
    assert {s.identity for s in ds.samples} == {"007l"} and sorted(s.capture for s in ds.samples) == [0, 1]
    assert ds.load(ds.samples[0]).shape == (32, 32)
    with pytest.raises(DatasetError, match="unknown XJTU-UP sub-database xx"):
        open_dataset("xjtu-up", root=str(tmp_path), subsets="xx")


def test_11k_hands_aspects_and_accessories(shared_data):
    root = str(shared_data / "11k-hands")
    ds = open_dataset("11k-hands", root=root)
    assert len(ds.samples) == 1401 and len(ds.identities()) == 126
    assert Counter(s.band for s in ds.samples)["palmar-right"] == 338
    clean = open_dataset("11k-hands", root=root, aspects="palmar-right", accessories="exclude")
    assert 0 < len(clean.samples) < 338 and all(not s.tags for s in clean.samples)
    assert {(s.modality, s.hand) for s in clean.samples} == {("palmar", "r")}
    assert open_dataset("11k-hands", root=root, colour=True).load(ds.samples[0]).shape[2] == 3


def test_hd_marks_the_extra_gallery_identities(tmp_path):
    for name in ("1_1.jpg", "1_2.jpg", "600_1.jpg"):
        _write(tmp_path / name)
    ds = open_dataset("hd", root=str(tmp_path))
    assert {s.identity: s.tags for s in ds.samples} == {"0001": (), "0600": ("extra-gallery",)}


def test_veindeep_16bit_infrared(shared_data):
    ds = open_dataset("veindeep", root=str(shared_data / "veindeep"))
    assert len(ds.samples) == 168 and len(ds.identities()) == 28
    img = ds.load(ds.samples[0])
    assert img.dtype == np.uint8 and img.shape == (424, 512) and img.std() > 10
    assert open_dataset("veindeep", root=str(shared_data / "veindeep"), channel="depth").modalities() == ["depth"]


def test_iitd_eyes_are_identities(shared_data):
    ds = open_dataset("iitd-iris", root=str(shared_data / "iitd-iris"))
    assert len(ds.samples) == 1500 and ds.modalities() == ["ocular"]
    assert all(s.identity.endswith(s.hand) for s in ds.samples)
    assert len(open_dataset("iitd", root=str(shared_data / "iitd-iris"), per_eye=False).identities()) == 150


def test_folder_layouts_and_manifest(tmp_path):
    _write(tmp_path / "tree" / "alice" / "1.png")
    _write(tmp_path / "tree" / "alice" / "2.png")
    _write(tmp_path / "tree" / "bob" / "vein" / "1.bmp")
    ds = open_dataset("folder", root=str(tmp_path / "tree"))
    assert sorted((s.identity, s.modality, s.capture) for s in ds.samples) == [
        ("alice", "print", 0), ("alice", "print", 1), ("bob", "vein", 0)]
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,identity,modality,session\ntree/alice/1.png,a,print,2\n")
    ds = open_dataset("folder", root=str(manifest))
    assert [(s.identity, s.session) for s in ds.samples] == [("a", 2)] and ds.load(ds.samples[0]).shape == (40, 40)
    manifest.write_text("file,who\nx.png,a\n")
    with pytest.raises(DatasetError, match="lacks column.*identity"):
        open_dataset("folder", manifest=str(manifest))


def test_corrupt_image_and_empty_selection_name_the_path(tmp_path):
    bad = tmp_path / "session1" / "00001.bmp"
    bad.parent.mkdir()
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match="1 of 1 files are not readable images .*00001.bmp"):
        open_dataset("tongji", root=str(tmp_path))  # at open, before any training (main: at first load)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images matched under .*empty"):
        open_dataset("tongji", root=str(tmp_path / "empty"))


def test_data_config_passes_adapter_options(shared_data):
    cfg = DataConfig(dataset="casiam", root=str(shared_data / "casia-ms"), protocol="closed",
                     options={"bands": 940})
    ds, split = open_split(cfg)
    assert ds.name == "casia-ms" and len(split.test_gallery) == 67 * 3 and len(split.test_probe) == 67 * 3
    assert len(split.train) == 67 * 2 and len(split.val_probe) == 67


def test_iitd_reads_the_full_databases_bmp_layout(tmp_path):
    """IITD iris v1.0 ships NNN/KK_L.bmp (the subset here is PNG)."""
    for person in ("001", "002"):
        (tmp_path / person).mkdir()
        for name in ("01_L", "02_L", "06_R", "07_R"):
            cv2.imwrite(str(tmp_path / person / f"{name}.bmp"), np.full((240, 320), 90, np.uint8))
    ds = open_dataset("iitd-iris", root=str(tmp_path))
    assert len(ds.samples) == 8 and ds.identities() == ["001l", "001r", "002l", "002r"]
    assert ds.load(ds.samples[0]).shape == (240, 320)


def _full_folder(shared_data, name):
    """A full real folder of ../shared/data, or a skip naming it where this copy of shared lacks it."""
    root = shared_data / name
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


def test_full_polyu_ms_folders_pair_every_band(shared_data):
    root = _full_folder(shared_data, "polyu-ms-full")
    ds = open_dataset("polyu-ms", root=str(root), bands="red,green,blue,nir")
    assert len(ds.samples) == 16176 and len(ds.identities()) == 337
    keys = {b: {(s.identity, s.session, s.capture) for s in ds.samples if s.band == b}
            for b in ("red", "green", "blue", "nir")}
    assert all(k == keys["nir"] for k in keys.values()) and len(keys["nir"]) == 337 * 12
    assert Counter(s.modality for s in ds.samples) == {"print": 3 * 4044, "vein": 4044}
    assert ds.load(ds.samples[0]).shape == (128, 128)


def test_paper_bands_average_the_stacked_print_bands(shared_data):
    """PolyU paper preset: print = mean of red, green and blue of one capture, vein = NIR, still paired."""
    root = _full_folder(shared_data, "polyu-ms-full")
    ds = open_dataset("polyu", root=str(root), bands="paper")
    assert {(s.band, s.modality) for s in ds.samples} == {("red+green+blue", "print"), ("nir", "vein")}
    assert len(ds.samples) == 2 * 4044
    sample = next(s for s in ds.samples if s.band == "red+green+blue")
    parts = [cv2.imread(sample.path.replace("/red/", f"/{b}/"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
             for b in ("red", "green", "blue")]
    expected = np.clip(np.mean(parts, axis=0) + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(ds.load(sample), expected)


def test_casia_roi_folder_all_six_bands_and_the_paper_preset(shared_data):
    root = _full_folder(shared_data, "casia-ms-roi")
    ds = open_dataset("casia-ms", root=str(root), bands="460,630,700,wht,850,940", roi="none")
    assert len(ds.samples) == 4567 and len(ds.identities()) == 134
    assert {s.hand for s in ds.samples} == {"l", "r"} and ds.load(ds.samples[0]).shape == (180, 180)
    assert Counter(s.modality for s in ds.samples)["vein"] == 772 + 776
    paper = open_dataset("casia-ms", root=str(root), bands="paper", roi="none")
    assert {(s.band, s.modality) for s in paper.samples} == {("700+460", "print"), ("850", "vein")}
    # a composite exists only where both parts were captured (duplicates were removed from some palms)
    n700 = {(s.identity, s.capture) for s in ds.samples if s.band == "700"}
    n460 = {(s.identity, s.capture) for s in ds.samples if s.band == "460"}
    assert sum(s.band == "700+460" for s in paper.samples) == len(n700 & n460)
    with pytest.raises(DatasetError, match="unknown CASIA band 999"):
        open_dataset("casia-ms", root=str(root), bands="700+999", roi="none")


def test_full_tongji_numbering_with_gaps(shared_data):
    root = _full_folder(shared_data, "tongji-full")
    ds = open_dataset("tongji", root=str(root))
    assert len(ds.samples) == 8060 and len(ds.identities()) == 403
    assert all(Counter(s.session for s in g) == {1: 10, 2: 10} for g in ds.by_identity().values())
    last = next(s for s in ds.samples if s.path.endswith("session2/05990.png"))
    assert (last.identity, last.capture, last.session) == ("0599", 9, 2)  # file n -> palm (n - 1) // 10 + 1


def test_the_co_hashing_papers_closed_protocol_on_polyu(shared_data):
    """Paper: PolyU captures 1-8 train and enroll, 9-12 probe (print = red+green+blue, vein = NIR)."""
    root = _full_folder(shared_data, "polyu-ms-full")
    cfg = DataConfig(dataset="polyu", root=str(root), protocol="closed", enroll_fraction=2 / 3,
                     options={"bands": "paper"})
    _, split = open_split(cfg)
    per_palm = Counter((s.identity, s.modality) for s in split.test_gallery)
    assert set(per_palm.values()) == {8} and len(per_palm) == 2 * 337
    assert set(Counter((s.identity, s.modality) for s in split.test_probe).values()) == {4}
    assert all((s.session, s.capture) >= (2, 3) for s in split.test_probe)
    assert len(split.train) == 2 * 337 * 7 and len(split.val_probe) == 2 * 337
    with pytest.raises(DatasetError, match="enroll_fraction must be in"):
        open_split(DataConfig(dataset="polyu", root=str(root), protocol="closed", enroll_fraction=1.0))


def test_train_bands_only_train_and_only_with_their_capture(shared_data):
    """CASIA ROIs with 630 / 700 / WHT / 850 nm as training-only bands: the same identities and test palms as
    460 + 940 alone, the extra bands' samples train exactly where their capture trains, and never reach a
    validation or test gallery or probe."""
    root = _full_folder(shared_data, "casia-ms-roi")
    plain = DataConfig(dataset="casia-ms", root=str(root), options={"bands": "460,940", "roi": "none"})
    extra = DataConfig(dataset="casia-ms", root=str(root),
                       options={"bands": "460,940", "roi": "none", "train_bands": "630,700,wht,850"})
    (_, a), (ds, b) = open_split(plain), open_split(extra)
    assert {s.band for s in ds.samples if "train-only" in s.tags} == {"630", "700", "wht", "850"}
    for part in ("val_gallery", "val_probe", "test_gallery", "test_probe"):
        assert getattr(a, part) == getattr(b, part)
    added = [s for s in b.train if "train-only" in s.tags]
    assert b.train[: len(a.train)] == a.train and len(b.train) == len(a.train) + len(added)
    trained = {(s.identity, s.modality, s.capture) for s in a.train}
    assert {(s.identity, s.modality, s.capture) for s in added} <= trained and len(added) > 3 * len(a.train) // 2
    assert {s.modality for s in added} == {"print", "vein"}
    closed = open_split(DataConfig(**{**extra.__dict__, "protocol": "closed"}))[1]
    closed_trained = {(s.identity, s.modality, s.capture) for s in closed.train if "train-only" not in s.tags}
    closed_added = {(s.identity, s.modality, s.capture) for s in closed.train if "train-only" in s.tags}
    assert closed_added <= closed_trained and len(closed_added) > 0.9 * len(closed_trained)  # a few lack bands
    assert not closed_added & {(s.identity, s.modality, s.capture) for s in closed.test_probe + closed.val_probe}
    assert not any("train-only" in s.tags for s in closed.val_gallery + closed.val_probe + closed.test_gallery)
    with pytest.raises(DatasetError, match="both bands and train_bands: 940"):
        open_dataset("casia-ms", root=str(root), bands="460,940", train_bands="940", roi="none")
    with pytest.raises(DatasetError, match="unknown CASIA band 123"):
        open_dataset("casia-ms", root=str(root), bands="460", train_bands="123", roi="none")


def test_polyu_train_bands_tag_red_and_blue(tmp_path):
    for band in ("Red", "Green", "Blue", "NIR"):
        _write(tmp_path / band / "001" / "1_01_s.bmp")
    ds = open_dataset("polyu-ms", root=str(tmp_path), bands="green,nir", train_bands="red,blue")
    assert {(s.band, s.tags) for s in ds.samples} == {("green", ()), ("nir", ()), ("red", ("train-only",)),
                                                       ("blue", ("train-only",))}
