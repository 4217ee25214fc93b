"""Dataset readers (tfseg.data) on tiny trees written in each dataset's layout, and the synthetic set.

Expected values come from the published tables (VOCdevkit's colour map, cityscapesScripts'
labels.py, ADE20K's objectInfo150, the SegNet tutorial's CamVid colours), typed here by hand.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tfseg.data import DATASETS, SegmentationDataset, open_dataset, read_pair
from tfseg.data.camvid import open_camvid
from tfseg.data.palettes import voc_colormap
from tfseg.data.synthetic import CLASS_NAMES as SYNTHETIC_CLASSES
from tfseg.data.synthetic import write_synthetic_voc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """No Keras here: replaces conftest's per-test session reset (half a second each)."""
    yield


def write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., ::-1]))


def write_gray(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.asarray(values, np.uint8))


def write_palette_png(path, indices, palette):
    """An indexed-colour PNG (colour type 3), the format of VOC's SegmentationClass files."""
    indices = np.asarray(indices, np.uint8)
    height, width = indices.shape

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + row.tobytes() for row in indices)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
        + chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def image(height=6, width=8, value=(200, 30, 10)):
    return np.broadcast_to(np.array(value, np.uint8), (height, width, 3))


# --- PASCAL VOC ------------------------------------------------------------------------------------

VOC_LABELS = {
    "2007_000032": [[0, 0, 1, 1, 1, 255, 15, 15]] * 3 + [[20, 20, 255, 255, 0, 0, 0, 0]] * 3,
    "2007_000039": [[0] * 8] * 3 + [[19, 255, 11, 11, 11, 11, 255, 0]] * 3,
    "2007_000063": [[12] * 8] * 6,
}


def write_voc(top, labels=VOC_LABELS, splits=None):
    root = top / "VOCdevkit" / "VOC2012"
    for image_id, label in labels.items():
        write_rgb(root / "JPEGImages" / f"{image_id}.jpg", image())
        write_palette_png(root / "SegmentationClass" / f"{image_id}.png", label, voc_colormap(256))
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    splits = splits or {"train": ["2007_000032", "2007_000039"], "val": ["2007_000063"]}
    for split, ids in splits.items():
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_voc_colormap_matches_the_published_map():
    # VOCdevkit labelcolormap(256): classes 0..20 and 255 (void).
    published = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
                 (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0),
                 (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0),
                 (0, 192, 0), (128, 192, 0), (0, 64, 128)]
    colors = voc_colormap(256)
    np.testing.assert_array_equal(colors[:21], published)
    assert tuple(colors[255]) == (224, 224, 192)
    assert len({tuple(c) for c in colors}) == 256


def test_voc_reads_palette_pngs_as_class_indices(tmp_path):
    root = write_voc(tmp_path)
    ds = open_dataset("voc", tmp_path)  # the folder above VOCdevkit
    assert isinstance(ds, SegmentationDataset) and ds.root == root
    assert ds.num_classes == 21 and ds.class_names[15] == "person" and ds.class_names[20] == "tvmonitor"
    assert ds.ignore_label == 255 and ds.palette.shape == (21, 3) and tuple(ds.palette[15]) == (192, 128, 128)
    assert sorted(ds.splits) == ["train", "val"] and len(ds.files("train")) == 2
    assert open_dataset("voc", root.parent).root == root and open_dataset("voc", root).root == root
    for image_path, label_path in ds.files("train") + ds.files("val"):
        pixels, label = read_pair(image_path, label_path, ds)
        np.testing.assert_array_equal(label, VOC_LABELS[label_path.stem])
        assert pixels.shape == (6, 8, 3) and pixels[..., 0].mean() > 150 > pixels[..., 2].mean()  # RGB order


def test_voc_train_aug_split(tmp_path):
    root = write_voc(tmp_path)
    aug = {"2007_000032": [[5] * 8] * 6, "2008_000002": [[0, 255, 7, 7, 7, 7, 7, 7]] * 6}
    write_rgb(root / "JPEGImages" / "2008_000002.jpg", image())
    for image_id, label in aug.items():
        write_gray(root / "SegmentationClassAug" / f"{image_id}.png", label)
    listing = root / "ImageSets" / "SegmentationAug" / "train_aug.txt"
    listing.parent.mkdir()
    listing.write_text("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in aug))
    ds = open_dataset("voc", root)
    assert len(ds.files("train_aug")) == 2
    for image_path, label_path in ds.files("train_aug"):
        np.testing.assert_array_equal(read_pair(image_path, label_path, ds)[1], aug[image_path.stem])
    listing.unlink()
    stems = root / "ImageSets" / "Segmentation" / "train_aug.txt"
    stems.write_text("2008_000002\n")
    assert [p.stem for p, _ in open_dataset("voc", root, train_aug=True).files("train_aug")] == ["2008_000002"]
    assert "train_aug" not in open_dataset("voc", root, train_aug=False).splits


def test_voc_layout_errors_name_the_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        open_dataset("voc", tmp_path)
    root = write_voc(tmp_path)
    with pytest.raises(FileNotFoundError, match="SegmentationClassAug"):
        open_dataset("voc", root, train_aug=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val\.txt"):
        open_dataset("voc", root)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000063\n2007_009999\n")
    with pytest.raises(FileNotFoundError, match="2007_009999"):
        open_dataset("voc", root)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000063\n")
    (root / "SegmentationClass" / "2007_000039.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"SegmentationClass[/\\]2007_000039\.png"):
        open_dataset("voc", root)
    os.rename(root / "SegmentationClass", root / "Labels")
    with pytest.raises(FileNotFoundError, match="SegmentationClass"):
        open_dataset("voc", root)


def test_empty_split_raises(tmp_path):
    root = write_voc(tmp_path, splits={"train": ["2007_000032"], "val": []})
    ds = open_dataset("voc", root)
    with pytest.raises(ValueError, match="'val'.*empty"):
        ds.files("val")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        ds.files("test")


# --- Cityscapes ------------------------------------------------------------------------------------

# labelId -> trainId pairs from cityscapesScripts' labels.py.
CITYSCAPES_IDS = [[7, 8, 11, 12, 13, 17, 19, 20, 21, 22],
                  [23, 24, 25, 26, 27, 28, 31, 32, 33, 0],
                  [1, 2, 3, 4, 5, 6, 9, 10, 14, 15],
                  [16, 18, 29, 30, 34, 7, 7, 7, 7, 255]]
CITYSCAPES_TRAIN = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
                    [10, 11, 12, 13, 14, 15, 16, 17, 18, 255],
                    [255] * 10,
                    [255, 255, 255, 255, 255, 0, 0, 0, 0, 255]]


def write_cityscapes(root, splits=("train", "val")):
    for split in splits:
        for city, frame in (("aachen", "000000_000019"), ("bochum", "000001_000123")):
            stem = f"{city}_{frame}"
            write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image(4, 10))
            write_gray(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", CITYSCAPES_IDS)
    return root


def test_cityscapes_label_ids_map_to_the_19_train_ids(tmp_path):
    ds = open_dataset("cityscapes", write_cityscapes(tmp_path))
    assert ds.num_classes == 19 and ds.class_names[0] == "road" and ds.class_names[18] == "bicycle"
    assert tuple(ds.palette[0]) == (128, 64, 128) and tuple(ds.palette[10]) == (70, 130, 180)
    assert ds.label_lut.shape == (256,) and ds.ignore_label == 255
    assert sorted(ds.splits) == ["train", "val"] and len(ds.files("val")) == 2
    for image_path, label_path in ds.files("train"):
        assert label_path.name == image_path.name.replace("leftImg8bit", "gtFine_labelIds")
        np.testing.assert_array_equal(read_pair(image_path, label_path, ds)[1], CITYSCAPES_TRAIN)


def test_cityscapes_train_id_files(tmp_path):
    root = tmp_path
    write_rgb(root / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png", image(4, 10))
    write_gray(root / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelTrainIds.png", CITYSCAPES_TRAIN)
    ds = open_dataset("cityscapes", root, train_ids=True)
    assert ds.label_lut is None
    np.testing.assert_array_equal(read_pair(*ds.files("val")[0], ds)[1], CITYSCAPES_TRAIN)


def test_cityscapes_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        open_dataset("cityscapes", tmp_path)
    root = write_cityscapes(tmp_path)
    (root / "gtFine" / "val" / "bochum" / "bochum_000001_000123_gtFine_labelIds.png").unlink()
    with pytest.raises(FileNotFoundError, match="bochum_000001_000123_gtFine_labelIds.png"):
        open_dataset("cityscapes", root)
    os.rename(root / "gtFine" / "val", root / "gtFine" / "valid")
    with pytest.raises(FileNotFoundError, match=r"gtFine[/\\]val\b"):
        open_dataset("cityscapes", root)


# --- ADE20K ----------------------------------------------------------------------------------------

def test_ade20k_zero_is_ignored_and_classes_shift_down(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    stored = [[0, 1, 2, 13], [150, 149, 0, 1]]
    for split, folder in (("train", "training"), ("val", "validation")):
        for n in (1, 2):
            stem = f"ADE_{split}_{n:08d}"
            write_rgb(root / "images" / folder / f"{stem}.jpg", image(2, 4))
            write_gray(root / "annotations" / folder / f"{stem}.png", stored)
    ds = open_dataset("ade20k", tmp_path)
    assert ds.num_classes == 150 and ds.palette.shape == (150, 3)
    # objectInfo150: 1 wall, 2 building, 13 person, 150 flag.
    assert (ds.class_names[0], ds.class_names[1], ds.class_names[12], ds.class_names[149]) == (
        "wall", "building", "person", "flag")
    assert sorted(ds.splits) == ["train", "val"] and len(ds.files("train")) == 2
    label = read_pair(*ds.files("val")[1], ds)[1]
    np.testing.assert_array_equal(label, [[255, 0, 1, 12], [149, 148, 255, 0]])
    # The official DeepLab numbering (data_generator.py: 151 classes, ignore label 0), as the official card's model.
    official = open_dataset("ade20k", tmp_path, reduce_zero_label=False)
    assert official.num_classes == 151 and official.ignore_label == 0 and official.class_names[:2] == ("other", "wall")
    assert tuple(official.palette[0]) == (0, 0, 0) and tuple(official.palette[1]) == tuple(ds.palette[0])
    np.testing.assert_array_equal(read_pair(*official.files("val")[1], official)[1], stored)
    (root / "annotations" / "validation" / "ADE_val_00000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="ADE_val_00000002.png"):
        open_dataset("ade20k", root)
    os.rename(root / "annotations" / "validation", root / "annotations" / "val")
    with pytest.raises(FileNotFoundError, match=r"annotations[/\\]validation"):
        open_dataset("ade20k", root)


# --- CamVid ----------------------------------------------------------------------------------------

def write_camvid(root):
    for split, stems in (("train", ["0001TP_006690", "0001TP_006720"]), ("val", ["0016E5_07959"])):
        lines = []
        for stem in stems:
            write_rgb(root / split / f"{stem}.png", image(3, 4))
            write_gray(root / f"{split}annot" / f"{stem}.png", [[0, 3, 11, 10]] * 3)
            lines.append(f"/SegNet/CamVid/{split}/{stem}.png /SegNet/CamVid/{split}annot/{stem}.png\n")
        (root / f"{split}.txt").write_text("".join(lines))
    return root


def test_camvid_segnet_layout(tmp_path):
    ds = open_dataset("camvid", write_camvid(tmp_path))
    assert ds.num_classes == 11 and ds.ignore_label == 11 and ds.class_names[3] == "Road"
    # The SegNet tutorial's colours: Sky, Pavement, Bicyclist.
    assert tuple(ds.palette[0]) == (128, 128, 128) and tuple(ds.palette[4]) == (60, 40, 222)
    assert tuple(ds.palette[10]) == (0, 128, 192)
    assert [len(ds.files(s)) for s in ("train", "val")] == [2, 1]
    assert ds.files("val")[0] == (tmp_path / "val" / "0016E5_07959.png", tmp_path / "valannot" / "0016E5_07959.png")
    np.testing.assert_array_equal(read_pair(*ds.files("val")[0], ds)[1], [[0, 3, 11, 10]] * 3)
    write_gray(tmp_path / "valannot" / "0016E5_07959.png", [[0, 3, 12, 10]] * 3)
    with pytest.raises(ValueError, match=r"0016E5_07959.png holds values \[12\]"):
        read_pair(*ds.files("val")[0], ds)
    (tmp_path / "trainannot" / "0001TP_006720.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"trainannot[/\\]0001TP_006720.png"):
        open_camvid(tmp_path)


def test_camvid_shared_copy_counts():
    try:
        ds = open_dataset("camvid")
    except FileNotFoundError as error:
        pytest.skip(str(error))
    assert [len(ds.files(s)) for s in ("train", "val")] == [367, 101]


# --- Generic folders -------------------------------------------------------------------------------

def test_folder_single_split_with_class_file(tmp_path):
    (tmp_path / "classes.txt").write_text("background\ncat\n\ndog\n")
    for stem, label in (("a", [[0, 1], [2, 255]]), ("b", [[2, 2], [1, 0]])):
        write_rgb(tmp_path / "images" / f"{stem}.jpg", image(2, 2))
        write_gray(tmp_path / "labels" / f"{stem}.png", label)
    ds = open_dataset("folder", tmp_path)
    assert ds.class_names == ("background", "cat", "dog") and ds.ignore_label == 255
    assert ds.palette.shape == (3, 3) and len({tuple(c) for c in ds.palette}) == 3
    assert list(ds.splits) == ["train"] and [p.stem for p, _ in ds.files("train")] == ["a", "b"]
    np.testing.assert_array_equal(read_pair(*ds.files("train")[0], ds)[1], [[0, 1], [2, 255]])
    assert list(open_dataset("folder", tmp_path, split="all").splits) == ["all"]


def test_folder_split_subfolders_with_class_list(tmp_path):
    for split in ("train", "val"):
        write_rgb(tmp_path / "img" / split / "x.png", image(2, 2))
        write_gray(tmp_path / "ann" / split / "x_mask.png", [[0, 1], [1, 9]])
    ds = open_dataset("folder", tmp_path, images="img", labels="ann", classes=["road", "car"], ignore_label=9,
                      label_suffix="_mask", palette=[(1, 2, 3), (4, 5, 6)])
    assert sorted(ds.splits) == ["train", "val"] and ds.num_classes == 2
    np.testing.assert_array_equal(ds.palette, [(1, 2, 3), (4, 5, 6)])
    np.testing.assert_array_equal(read_pair(*ds.files("val")[0], ds)[1], [[0, 1], [1, 9]])
    (tmp_path / "img" / "test").mkdir()
    (tmp_path / "ann" / "test").mkdir()
    with pytest.raises(ValueError, match="'test'.*empty"):
        open_dataset("folder", tmp_path, images="img", labels="ann", classes=["road", "car"],
                     ignore_label=9, label_suffix="_mask").files("test")


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="images"):
        open_dataset("folder", tmp_path)
    write_rgb(tmp_path / "images" / "a.jpg", image(2, 2))
    write_rgb(tmp_path / "images" / "b.jpg", image(2, 2))
    write_gray(tmp_path / "labels" / "a.png", [[0, 0], [0, 0]])
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        open_dataset("folder", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"first: .*b\.jpg"):
        open_dataset("folder", tmp_path, classes=["a", "b"])
    with pytest.raises(ValueError, match="ignore_label=1"):
        open_dataset("folder", tmp_path, classes=["a", "b"], ignore_label=1)


# --- Registry --------------------------------------------------------------------------------------

def test_registry_names_and_errors(tmp_path):
    assert sorted(DATASETS) == ["ade20k", "camvid", "cityscapes", "folder", "synthetic", "voc"]
    with pytest.raises(ValueError, match="unknown dataset 'coco'.*ade20k, camvid, cityscapes, folder, synthetic, voc"):
        open_dataset("coco", tmp_path)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['fine'\].*train_ids=False"):
        open_dataset("cityscapes", tmp_path, fine=True)


def test_importing_tfseg_data_loads_neither_opencv_nor_tensorflow():
    code = (
        "import sys, types; pkg = types.ModuleType('tfseg'); pkg.__path__ = [sys.argv[1]]; sys.modules['tfseg'] = pkg\n"
        "import tfseg.data, tfseg.data.voc, tfseg.data.cityscapes, tfseg.data.ade20k, tfseg.data.camvid\n"
        "import tfseg.data.folder, tfseg.data.synthetic\n"
        "print(sorted(m for m in ('cv2', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(REPO / "tfseg")],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- Bad inputs (base.read_pair) -------------------------------------------------------------------

@pytest.fixture
def three_classes(tmp_path):
    return SegmentationDataset(name="t", root=tmp_path, class_names=("a", "b", "c"), ignore_label=255,
                               palette=np.zeros((3, 3), np.uint8), splits={})


def test_corrupt_image_names_the_file(tmp_path, three_classes):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_gray(tmp_path / "l.png", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        read_pair(tmp_path / "broken.jpg", tmp_path / "l.png", three_classes)
    write_rgb(tmp_path / "i.png", image(2, 2))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"broken\.png"):
        read_pair(tmp_path / "i.png", tmp_path / "broken.png", three_classes)


def test_size_mismatch_names_both_files(tmp_path, three_classes):
    write_rgb(tmp_path / "i.png", image(4, 6))
    write_gray(tmp_path / "l.png", np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"i\.png is 6x4 but its label map .*l\.png is 5x4"):
        read_pair(tmp_path / "i.png", tmp_path / "l.png", three_classes)


def test_label_values_outside_the_classes_raise(tmp_path, three_classes):
    write_rgb(tmp_path / "i.png", image(2, 2))
    write_gray(tmp_path / "l.png", [[0, 1], [255, 2]])
    assert read_pair(tmp_path / "i.png", tmp_path / "l.png", three_classes)[1].tolist() == [[0, 1], [255, 2]]
    write_gray(tmp_path / "l.png", [[0, 3], [7, 255]])
    with pytest.raises(ValueError, match=r"l\.png holds values \[3, 7\]"):
        read_pair(tmp_path / "i.png", tmp_path / "l.png", three_classes)


def test_voc_colour_outside_the_colour_map_raises(tmp_path):
    root = write_voc(tmp_path)
    ds = open_dataset("voc", root)
    write_rgb(root / "SegmentationClass" / "2007_000063.png", image(6, 8, (1, 2, 3)))
    with pytest.raises(ValueError, match=r"2007_000063\.png has colour \(1, 2, 3\)"):
        read_pair(*ds.files("val")[0], ds)
    write_palette_png(root / "SegmentationClass" / "2007_000063.png", [[21] * 8] * 6, voc_colormap(256))
    with pytest.raises(ValueError, match=r"holds values \[21\]"):
        read_pair(*ds.files("val")[0], ds)


def test_grayscale_and_rgba_images_are_converted_with_a_warning(tmp_path, three_classes):
    write_gray(tmp_path / "l.png", np.zeros((2, 3)))
    write_gray(tmp_path / "gray.png", [[10, 20, 30], [40, 50, 60]])
    with pytest.warns(UserWarning, match=r"gray\.png is grayscale"):
        pixels, _ = read_pair(tmp_path / "gray.png", tmp_path / "l.png", three_classes)
    assert pixels.shape == (2, 3, 3) and pixels[1, 2].tolist() == [60, 60, 60]
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 7, 200, 128  # B, R, alpha
    assert cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    with pytest.warns(UserWarning, match=r"rgba\.png has an alpha channel"):
        pixels, _ = read_pair(tmp_path / "rgba.png", tmp_path / "l.png", three_classes)
    assert pixels.shape == (2, 3, 3) and pixels[0, 0].tolist() == [200, 0, 7]


# --- Synthetic -------------------------------------------------------------------------------------

SMALL = dict(num_train=8, num_val=3, size=(64, 80))


def test_synthetic_is_deterministic_for_a_seed(tmp_path):
    def contents(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first = contents(write_synthetic_voc(tmp_path / "a", seed=3, **SMALL))
    assert first == contents(write_synthetic_voc(tmp_path / "b", seed=3, **SMALL))
    other = contents(write_synthetic_voc(tmp_path / "c", seed=4, **SMALL))
    assert first.keys() == other.keys()
    assert first[Path("JPEGImages/train_00000.jpg")] != other[Path("JPEGImages/train_00000.jpg")]
    # Image i of a split does not depend on how many images the split has.
    more = write_synthetic_voc(tmp_path / "d", seed=3, num_train=9, num_val=3, size=(64, 80))
    label = Path("SegmentationClass/train_00007.png")
    assert (more / label).read_bytes() == first[label]


def test_synthetic_labels_decode_through_open_dataset(tmp_path):
    write_synthetic_voc(tmp_path, image_format="png", **SMALL)
    ds = open_dataset("synthetic", tmp_path)
    assert ds.class_names == SYNTHETIC_CLASSES == ("background", "circle", "rectangle", "triangle", "star", "cross")
    assert ds.ignore_label == 255 and ds.palette.shape == (6, 3) and tuple(ds.palette[1]) == (128, 0, 0)
    assert [len(ds.files(s)) for s in ("train", "val", "trainval")] == [8, 3, 11]
    counts = np.zeros(256, np.int64)
    for image_path, label_path in ds.files("train"):
        pixels, label = read_pair(image_path, label_path, ds)
        assert pixels.shape == (64, 80, 3) and label.shape == (64, 80)
        counts += np.bincount(label.ravel(), minlength=256)
    assert set(np.flatnonzero(counts)) == {0, 1, 2, 3, 4, 5, 255}  # every class, and void borders
    assert 0.01 < counts[255] / counts.sum() < 0.2


def test_synthetic_generate_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="synthetic.json"):
        open_dataset("synthetic", tmp_path)
    ds = open_dataset("synthetic", tmp_path, generate=True, **SMALL)
    stamp = (tmp_path / "synthetic.json").stat().st_mtime_ns
    assert len(open_dataset("synthetic", tmp_path, generate=True, **SMALL).files("train")) == 8
    assert (tmp_path / "synthetic.json").stat().st_mtime_ns == stamp  # same options: not written again
    assert len(open_dataset("synthetic", tmp_path, generate=True, num_train=5, num_val=2, size=(64, 80))
               .files("train")) == 5
    assert ds.class_names == SYNTHETIC_CLASSES
    with pytest.raises(TypeError, match="colour"):
        open_dataset("synthetic", tmp_path, generate=True, colour=True)
