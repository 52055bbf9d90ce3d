"""Dataset format round-trip, importer layouts, normalisation, resume, and the ``data`` CLI."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import main
from forensics_core.dataset import ManifestRow, ManifestWriter, read_manifest, sort_manifest, write_manifest
from forensics_core.errors import DataError, UsageError
from forensics_core.hashing import hash_split
from forensics_core.importers import (
    LAYOUTS,
    LayoutOptions,
    NormaliseConfig,
    import_dataset,
    split_for,
    split_from_path,
    utkface_attributes,
)


def _img(path: Path, rng: np.random.Generator, size: tuple[int, int] = (40, 60), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


# -- manifest schema -------------------------------------------------------------------------------------------
def test_manifest_round_trip_keeps_face_fields_in_extra(tmp_path):
    row = ManifestRow(
        path="crops/a/f000001-t002.png", label="real", sha256="ab" * 32, source="clip.mp4", parent="cd" * 32,
        split="train", licence="test", extra={"frame": 1, "track": 2, "box": [1.0, 2.0, 30.5, 40.0],
                                              "landmarks": [[1.0, 2.0]] * 5, "prob": 0.99},
    )
    write_manifest(tmp_path, [row])
    (back,) = read_manifest(tmp_path)
    assert back == row
    assert json.loads(row.to_json())["track"] == 2  # extra fields are flat keys on disk
    with pytest.raises(DataError):
        ManifestRow(path="x.jpg", label="maybe")


def test_manifest_row_and_import_item_share_one_list_of_tags():
    """The provenance tags are declared once (``forensics_core.dataset.Provenance``) and the manifest line is
    unchanged by it: the same keys, sorted, as before the tags moved."""
    from dataclasses import fields

    from forensics_core.dataset import Provenance
    from forensics_core.importers import ImportItem

    tags = [f.name for f in fields(Provenance)]
    assert tags == ["generator", "family", "upsampler", "method", "source", "split", "licence"]
    assert issubclass(ManifestRow, Provenance) and issubclass(ImportItem, Provenance)
    item = ImportItem("/abs/a.png", "a.png", "fake", generator="g", family="f", upsampler="u", method="m",
                      source="s", split="val", licence="l")
    row = ManifestRow("fake/s/x.jpg", "fake", "ab", parent="cd", extra={"seed": 1}, **item.provenance())
    assert row.to_json() == (
        '{"family": "f", "generator": "g", "label": "fake", "licence": "l", "method": "m", "parent": "cd", '
        '"path": "fake/s/x.jpg", "seed": 1, "sha256": "ab", "source": "s", "split": "val", "upsampler": "u"}'
    )
    assert ManifestRow.from_dict(json.loads(row.to_json())) == row


def test_manifest_writer_resumes(tmp_path):
    with ManifestWriter(tmp_path) as w:
        w.write(ManifestRow(path="a.jpg", label="fake"))
    with ManifestWriter(tmp_path) as w:
        assert w.done == {"a.jpg"}


# -- helpers ---------------------------------------------------------------------------------------------------
def test_hash_split_is_deterministic_and_about_the_requested_size():
    keys = [f"real_faces/utk/{i}.jpg" for i in range(3000)]
    splits = [hash_split(k, 0.1) for k in keys]
    assert splits == [hash_split(k, 0.1) for k in keys]
    assert 0.07 < splits.count("val") / len(keys) < 0.13
    assert set(splits) == {"train", "val"}


def test_split_from_path():
    assert split_from_path("gan_faces/x/crossval/f1.jpg") == "crossval"
    assert split_from_path("a/Train/b/c.png") == "train"
    assert split_from_path("real_faces/utk/train.jpg") == ""  # a file name is not a folder


def test_utkface_attributes():
    assert utkface_attributes("26_1_2_20170116184028385.jpg.chip.jpg") == {"age": 26, "gender": "female",
                                                                          "race": "asian"}
    assert utkface_attributes("39_1_20170116174525125.jpg.chip.jpg") == {}  # the known malformed names


# -- folders layout --------------------------------------------------------------------------------------------
@pytest.fixture
def folders_src(tmp_path, rng) -> Path:
    src = tmp_path / "src"
    _img(src / "real" / "a.png", rng, (50, 80))
    _img(src / "real" / "sub dir" / "b c.png", rng, (64, 64))
    _img(src / "fake" / "gen1" / "train" / "x.jpg", rng, (128, 96))
    _img(src / "fake" / "gen1" / "val" / "y.webp", rng, (70, 70), fmt="WEBP")
    (src / "fake" / "gen1" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (src / "real" / "README.txt").write_text("not media")
    return src


def test_folders_import_normalises_every_class_the_same_way_and_resumes(folders_src, tmp_path):
    out = tmp_path / "ds"
    errors: list[str] = []
    norm = NormaliseConfig(size=32, jpeg_quality=85)
    rep = import_dataset(folders_src, out, layout="folders", norm=norm, on_error=errors.append)
    assert (rep.total, rep.written, rep.failed) == (5, 4, 1)
    assert len(errors) == 1 and "bad.jpg" in errors[0] and "\n" not in errors[0]
    rows = {r.extra.get("source_format"): r for r in read_manifest(out)}
    for r in rows.values():
        with Image.open(out / r.path) as im:
            assert im.format == "JPEG" and im.size == (32, 32)  # PNG, JPEG and WebP all come out the same
        assert r.parent and r.sha256 == hashlib.sha256((out / r.path).read_bytes()).hexdigest()
        assert r.extra["aligned"] is False
    fake = rows["webp"]
    assert (fake.label, fake.generator, fake.source, fake.split) == ("fake", "gen1", "fake/gen1", "val")
    assert all(" " not in r.path for r in rows.values())  # output names are sanitised
    # ... while the source file's own name is kept (CIPLAB-style sets carry their region codes only there)
    assert fake.extra["source_path"].startswith("fake/gen1/") and (folders_src / fake.extra["source_path"]).is_file()
    assert json.loads((out / "import.json").read_text())["normalise"]["size"] == 32

    again = import_dataset(folders_src, out, layout="folders", norm=norm)
    assert (again.written, again.skipped_done, again.failed) == (0, 4, 1)  # the bad file is retried, not the rest
    assert len(read_manifest(out)) == 4

    with pytest.raises(UsageError, match="different settings"):
        import_dataset(folders_src, out, layout="folders", norm=NormaliseConfig(size=48))


def test_folders_import_with_a_process_pool_writes_the_serial_imports_manifest_bytes(folders_src, tmp_path):
    norm = NormaliseConfig(size=24)
    rep = import_dataset(folders_src, tmp_path / "ds", layout="folders", norm=norm, workers=2)
    assert (rep.written, rep.failed) == (4, 1)
    import_dataset(folders_src, tmp_path / "serial", layout="folders", norm=norm)
    pooled = (tmp_path / "ds" / "manifest.jsonl").read_bytes()
    assert pooled == (tmp_path / "serial" / "manifest.jsonl").read_bytes()
    paths = [r.path for r in read_manifest(tmp_path / "ds")]
    assert paths == sorted(paths)


def test_sort_manifest_orders_rows_by_path_whatever_order_they_finished_in(tmp_path):
    rows = [ManifestRow(path=f"{c}.jpg", label="real", sha256=c * 64) for c in "cab"]
    write_manifest(tmp_path, rows)
    sort_manifest(tmp_path)
    assert [r.path for r in read_manifest(tmp_path)] == ["a.jpg", "b.jpg", "c.jpg"]


def test_label_map_and_missing_class_folders(folders_src, tmp_path):
    (folders_src / "real").rename(folders_src / "camera")
    opts = LayoutOptions(label_map={"camera": "real", "fake": "fake"})
    items = list(LAYOUTS.get("folders").obj().items(folders_src, opts))
    assert {i.label for i in items} == {"real", "fake"}
    with pytest.raises(DataError, match="no class folders"):
        list(LAYOUTS.get("folders").obj().items(folders_src, LayoutOptions(label_map={"x": "real"})))


def test_align_uses_the_face_and_falls_back_to_centre_crop(tmp_path, rng):
    skimage_data = pytest.importorskip("skimage.data")
    src = tmp_path / "src"
    Image.fromarray(skimage_data.astronaut()).save(_dir(src / "real") / "astronaut.png")
    _img(src / "fake" / "noise.png", rng, (64, 64))
    out = tmp_path / "ds"
    rep = import_dataset(src, out, layout="folders", norm=NormaliseConfig(size=64, align=True))
    assert (rep.written, rep.aligned) == (2, 1)
    by_label = {r.label: r for r in read_manifest(out)}
    assert by_label["real"].extra["aligned"] is True and by_label["real"].extra["face"]["prob"] > 0.9
    assert by_label["fake"].extra["aligned"] is False


def _dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# -- labels-csv layout -----------------------------------------------------------------------------------------
def _labels_tree(root: Path, rng: np.random.Generator) -> Path:
    files = {
        "gan_faces/tpdne-stylegan2_someone/train/f0.jpg": ("fake", "gan_faces/tpdne-stylegan2_someone/train"),
        "gan_faces/tpdne-stylegan2_someone/crossval/f1.jpg": ("fake", "gan_faces/tpdne-stylegan2_someone/crossval"),
        "real_faces/ffhq128_someone/train/r0.png": ("real", "real_faces/ffhq128_someone/train"),
        "real_faces/utkface_someone/26_1_2_20170116184028385.jpg.chip.jpg": ("real", "real_faces/utkface_someone"),
        "real_faces/utkface_someone/30_0_0_20170116184028386.jpg.chip.jpg": ("real", "real_faces/utkface_someone"),
    }
    rows = []
    for rel, (binary, set_) in files.items():
        p = _img(root / rel, rng, (48, 48))
        rows.append([rel, binary, f"{binary}:test", set_, "o/r", "c0ffee", hashlib.md5(p.read_bytes()).hexdigest()])
    rows[-1][-1] = "0" * 32  # md5 mismatch: must be reported, not imported
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "binary", "label", "set", "source_repo", "commit", "md5"], *rows])
    return root


def test_labels_csv_import_fields(tmp_path, rng, capsys):
    src = _labels_tree(tmp_path / "shared", rng)
    out = tmp_path / "ds"
    rc = main(["-q", "data", "import", str(src), "--layout", "labels-csv", "--out", str(out), "--size", "32"])
    cap = capsys.readouterr()
    assert rc == 2 and "md5 differs" in cap.err and "30_0_0" in cap.err
    assert "4 written" in cap.out
    rows = {Path(r.extra["source_path"]).name: r for r in read_manifest(out)}
    f0, f1, r0, utk = rows["f0.jpg"], rows["f1.jpg"], rows["r0.png"], rows["26_1_2_20170116184028385.jpg.chip.jpg"]
    assert (f0.label, f0.family, f0.generator, f0.method) == ("fake", "stylegan2", "tpdne-stylegan2", "gan")
    # a train folder is hashed into train / val like an unsplit set, so every source has validation rows
    assert f0.split == split_for("gan_faces/tpdne-stylegan2_someone/train/f0.jpg", 0.1) and f0.split in ("train", "val")
    assert f0.source == "gan_faces/tpdne-stylegan2_someone" and f1.split == "crossval"
    assert (r0.label, r0.family, r0.generator) == ("real", "real", "")
    assert "non-commercial" in f0.licence and "non-commercial" in utk.licence
    assert (utk.extra["age"], utk.extra["gender"], utk.extra["race"]) == (26, "female", "asian")
    assert utk.split in ("train", "val") and utk.extra["source_repo"] == "o/r"

    rc = main(["data", "info", str(out), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert rc == 0 and info["n"] == 4
    assert info["by_label"] == {"fake": 2, "real": 2}
    assert info["by_family"] == {"real": 2, "stylegan2": 2}
    assert info["by_source"]["gan_faces/tpdne-stylegan2_someone"] == 2

    rc = main(["data", "import", str(src), "--out", str(out), "--size", "32"])
    cap = capsys.readouterr()
    assert "4 already done" in cap.out and "0 written" in cap.out


def test_labels_csv_rejects_escaping_paths(tmp_path):
    (tmp_path / "labels.csv").write_text("path,binary,set\n../etc/passwd,real,x\n")
    with pytest.raises(DataError, match="bad row"):
        list(LAYOUTS.get("labels-csv").obj().items(tmp_path, LayoutOptions()))


def _sampled_set(root: Path, family: str, rng: np.random.Generator, n: int = 3) -> Path:
    rows = []
    for i in range(n):
        _img(root / f"{i}.png", rng, (24, 24))
        rows.append(ManifestRow(path=f"{i}.png", label="fake", generator=f"{family}-ref", family=family,
                                upsampler="convT-k4s2", split="train" if i else "", parent="abc" if i else "",
                                extra={"seed": i, "checkpoint_sha256": "ff"}))
    write_manifest(root, rows)
    return root


def test_manifest_layout_renormalises_sampled_sets_and_keeps_provenance(tmp_path, rng):
    src = tmp_path / "fakes"
    _sampled_set(src / "dcgan", "dcgan", rng)
    _sampled_set(src / "srgan", "srgan", rng)
    out = tmp_path / "ds"
    rep = import_dataset(src, out, layout="manifest", norm=NormaliseConfig(size=16))
    assert (rep.written, rep.failed) == (6, 0)
    rows = read_manifest(out)
    assert {r.family for r in rows} == {"dcgan", "srgan"}
    for r in rows:
        assert r.upsampler == "convT-k4s2" and r.generator == f"{r.family}-ref" and r.extra["seed"] in (0, 1, 2)
        with Image.open(out / r.path) as im:
            assert im.format == "JPEG" and im.size == (16, 16)
        assert r.split in ("train", "val")
    assert sum(r.extra.get("edit_parent") == "abc" for r in rows) == 4
    # a single dataset dir works too; a folder without manifests is a one-line error
    assert len(list(LAYOUTS.get("manifest").obj().items(src / "dcgan", LayoutOptions()))) == 3
    with pytest.raises(DataError, match="no manifest.jsonl"):
        list(LAYOUTS.get("manifest").obj().items(tmp_path / "ds" / "fake", LayoutOptions()))


def test_manifest_layout_rejects_escaping_paths(tmp_path):
    write_manifest(tmp_path, [ManifestRow(path="../x.png", label="fake")])
    with pytest.raises(DataError, match="leaves the dataset"):
        list(LAYOUTS.get("manifest").obj().items(tmp_path, LayoutOptions()))


def test_data_info_on_a_missing_dataset(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- shared data (skips when absent) ---------------------------------------------------------------------------
def test_shared_labels_csv_lists_every_image(shared_data: Path):
    items = list(LAYOUTS.get("labels-csv").obj().items(shared_data, LayoutOptions()))
    assert len(items) > 15000
    fakes = [i for i in items if i.label == "fake" and i.source.startswith("gan_faces")]
    assert fakes and {i.family for i in fakes} == {"stylegan2"}
    assert {i.split for i in items if "crossval" in i.rel} == {"crossval"}
    utk = [i for i in items if "utkface" in i.source]
    assert utk and sum("age" in i.extra for i in utk) > 0.99 * len(utk)
    assert len({i.out_path() for i in items}) == len(items)  # output names are unique
