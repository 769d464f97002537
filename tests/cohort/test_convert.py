"""``layer import``: NRRD, MetaImage and a DICOM series written here are converted to NIfTI with their
spacing and orientation, depth moved to the first axis, SWE from kPa, no identifying header field anywhere
in the output, and a cohort sheet that ``layer validate`` passes."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from layer.cli import main
from layer.cohort.convert import depth_first, itk_affine, kpa_to_speed
from layer.cohort.validate import Rules, validate_cohort
from toy_cohort import volumes

SPACING = (0.3, 0.5, 0.8)  # ITK index order (i, j, k)
ORIGIN = (10.0, -20.0, 5.0)
PATIENT = "Doe^Jane"
PATIENT_ID = "PID-483920"


def _rotation() -> tuple[float, ...]:
    a = np.deg2rad(20.0)
    r = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return tuple(r.ravel())


def _image(array_kji: np.ndarray, direction=None) -> sitk.Image:
    """A SimpleITK image of a numpy array in (k, j, i) order with the test geometry."""
    image = sitk.GetImageFromArray(array_kji)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(direction or _rotation())
    return image


def _write(image: sitk.Image, path: Path, **fields: str) -> None:
    for key, value in fields.items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path), useCompression=False)


def _dicom_series(image: sitk.Image, folder: Path) -> None:
    """Write a 3-D image as a DICOM series (one file per k slice) with patient tags, as a scanner would."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    series = "1.2.826.0.1.3680043.2.1125." + str(int(time.time()))
    for k in range(image.GetDepth()):
        frame = image[:, :, k]
        tags = {
            "0010|0010": PATIENT, "0010|0020": PATIENT_ID, "0010|0030": "19700101", "0008|0080": "St Example",
            "0008|0060": "US", "0020|000e": series, "0020|000d": series + ".1", "0008|0018": f"{series}.2.{k}",
            "0020|0013": str(k + 1), "0028|0030": f"{SPACING[1]}\\{SPACING[0]}",
            "0020|0037": "\\".join(f"{v:.10f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7])),
            "0020|0032": "\\".join(f"{v:.10f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
        }  # fmt: skip
        for key, value in tags.items():
            frame.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(frame)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """Four subjects: NRRD (depth on index axis k), MetaImage (depth on k), DICOM B-mode (depth down the
    rows, j) with NRRD SWE in kPa and layer maps; patient text planted in every header."""
    root = tmp_path_factory.mktemp("exports")
    rows, sources = [], {}
    for s in range(4):
        for k in range(2):
            sid = f"s{s}-{k}"
            vols = volumes(s * 10 + k)  # (depth, lateral, elevation)
            row = {"scan_id": sid, "subject_id": f"sub{s}", "label": s % 2, "site": "A"}
            if s < 2:  # NRRD / MetaImage: numpy (depth, lat, elev) = ITK (k, j, i): depth is index axis 2
                ext = ".nrrd" if s == 0 else ".mha"
                for kind, arr in vols.items():
                    if kind == "swe":
                        arr = 3.0 * arr**2  # Young's modulus in kPa
                    path = root / f"{PATIENT.replace('^', '_')}_{sid}_{kind}{ext}"
                    _write(_image(arr), path, PatientName=PATIENT, PatientID=PATIENT_ID)
                    row[kind] = path.name
                    sources[(sid, kind)] = (path, 2)
            else:  # DICOM B-mode: frames along k (elevation), depth down the rows (j), lateral along i
                layout = {kind: np.ascontiguousarray(arr.transpose(2, 0, 1)) for kind, arr in vols.items()}
                bmode = (layout["bmode"] * 255).astype(np.uint8)
                _dicom_series(_image(bmode, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)), root / f"dicom_{sid}")
                row["bmode"] = f"dicom_{sid}"
                sources[(sid, "bmode")] = (root / f"dicom_{sid}", 1)
                for kind in ("swe", "layers"):
                    arr = 3.0 * layout[kind] ** 2 if kind == "swe" else layout[kind]
                    path = root / f"{sid}_{kind}.nrrd"
                    _write(_image(arr, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)), path, PatientName=PATIENT)
                    row[kind] = path.name
                    sources[(sid, kind)] = (path, 1)
            rows.append(row)
    manifest = root / "manifest.tsv"
    pd.DataFrame(rows).to_csv(manifest, sep="\t", index=False)
    out = root / "cohort"
    code = main(["import", str(manifest), "--out", str(out), "--swe-unit", "kPa"])
    return {"root": root, "manifest": manifest, "out": out, "code": code, "sources": sources, "rows": rows}


def test_dicom_series_carries_patient_tags(exports):
    """The test's own premise: the DICOM input does hold the patient's name and id."""
    first = sorted((exports["root"] / "dicom_s2-0").iterdir())[0]
    ds = pydicom.dcmread(first)
    assert str(ds.PatientName) == PATIENT and ds.PatientID == PATIENT_ID and ds.Modality == "US"


def test_every_scan_converted_and_logged(exports):
    assert exports["code"] == 0
    log = (exports["out"] / "import.log").read_text().splitlines()
    assert log[0] == "layer import: 8 scan(s) converted, 0 refused"
    assert len([line for line in log if line.startswith("converted ")]) == 24
    dicom = [line for line in log if line.startswith("converted s2-0 ") and "dicom_s2-0" in line]
    assert dicom[0].endswith(
        "| dicom_s2-0 | DICOM series (6 files), 6 identifying tag(s) dropped (PatientName, PatientID, ...) -> "
        "scans/s2-0_bmode.nii.gz (12, 6, 6), 0.5 x 0.3 x 0.8 mm, depth: axis 1 (layer map)"
    )
    assert all(len(line) <= 200 for line in log)
    nrrd = next(line for line in log if line.startswith("converted s0-0 ") and "_bmode.nrrd" in line)
    # depth (index axis k) first, then i and j: the spacing follows the axes
    assert "NRRD -> scans/s0-0_bmode.nii.gz (12, 6, 6), 0.8 x 0.3 x 0.5 mm, depth: axis 2 (layer map)" in nrrd


def test_geometry_is_kept(exports):
    """Every voxel of every output sits where its source voxel was, in mm (ITK LPS vs NIfTI RAS), and
    holds the same value; spacing is the source's, permuted with the axes."""
    worst_mm, worst_spacing = 0.0, 0.0
    rng = np.random.default_rng(0)
    for (sid, kind), (path, depth) in exports["sources"].items():
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)))
            source = reader.Execute()
        else:
            source = sitk.ReadImage(str(path))
        out = nib.load(exports["out"] / "scans" / f"{sid}_{kind}.nii.gz")
        data = np.asarray(out.dataobj)
        order = [depth] + [a for a in range(3) if a != depth]
        expected = np.asarray(source.GetSpacing())[order]
        worst_spacing = max(worst_spacing, float(np.abs(out.header.get_zooms()[:3] - expected).max()))
        src = sitk.GetArrayFromImage(source).transpose(2, 1, 0)
        for _ in range(20):
            idx = tuple(int(rng.integers(0, n)) for n in source.GetSize())
            lps = np.asarray(source.TransformIndexToPhysicalPoint(idx))
            new = tuple(idx[a] for a in order)
            ras = out.affine @ np.array([*new, 1.0])
            worst_mm = max(worst_mm, float(np.abs(ras[:3] * [-1, -1, 1] - lps).max()))
            want = src[idx]
            if kind == "swe":
                want = np.sqrt(want / 3.0)
            np.testing.assert_allclose(data[new], want, rtol=1e-5, equal_nan=True)
    assert worst_mm < 1e-4, worst_mm
    assert worst_spacing < 1e-6, worst_spacing
    print(f"round trip: worst position error {worst_mm:.2e} mm, worst spacing error {worst_spacing:.2e} mm")


def test_no_identifying_text_in_any_output(exports):
    needles = [PATIENT.encode(), PATIENT_ID.encode(), b"St Example", b"19700101", b"Doe"]
    files = [p for p in exports["out"].rglob("*") if p.is_file()]
    assert len(files) == 8 * 3 + 2
    for path in files:
        raw = path.read_bytes()
        body = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        if path.name == "import.log":  # the log names the input files, whose names the user chose
            body = b"\n".join(line.split(b" | ")[0] + line.split(b" | ")[2] for line in body.splitlines()[1:])
        for needle in needles:
            assert needle not in body, (path, needle)
    # the outputs are named by scan_id, not by the export's (here identifying) file name
    assert not [p for p in files if "Doe" in p.name]


def test_sheet_passes_validate(exports, capsys):
    sheet = pd.read_csv(exports["out"] / "cohort.tsv", sep="\t")
    assert list(sheet.columns) == ["scan_id", "subject_id", "label", "bmode", "swe", "layers", "site"]
    assert sheet["bmode"].tolist()[0] == "scans/s0-0_bmode.nii.gz"
    report, clean = validate_cohort(exports["out"] / "cohort.tsv", Rules(n_folds=2))
    assert report.ok and not report.warnings, report.text("cohort")
    assert main(["validate", str(exports["out"] / "cohort.tsv"), "--n-folds", "2"]) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
    swe = nib.load(clean.loc[0, "swe"]).get_fdata()
    assert 2.0 <= np.nanmin(swe) and np.nanmax(swe) <= 3.0  # the toy SWE speeds (2-3 m/s), back from kPa


def test_refusals_are_logged_one_line_each(tmp_path, capsys):
    vols = volumes(0)
    _write(_image(vols["bmode"]), tmp_path / "b.nrrd")
    no_depth = np.zeros_like(vols["layers"])  # no dermis or muscle: nothing tells depth
    _write(_image(no_depth), tmp_path / "l.nrrd")
    _write(_image(vols["layers"]), tmp_path / "good_l.nrrd")
    rgb = sitk.Compose([_image(vols["bmode"])] * 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    sitk.WriteImage(_image(vols["bmode"])[:, :, 0], str(tmp_path / "flat.nrrd"))
    _dicom_series(_image((vols["bmode"] * 255).astype(np.uint8), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)), tmp_path / "dcm")
    _write(_image(no_depth, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)), tmp_path / "l_dcm.nrrd")
    rows = [
        ("a", "p1", 1, "b.nrrd", "l.nrrd"),
        ("b", "p2", 0, "rgb.mha", "good_l.nrrd"),
        ("c", "p3", 1, "photo.png", "good_l.nrrd"),
        ("d", "p4", 0, "missing.nrrd", "good_l.nrrd"),
        ("e", "p5", 1, "flat.nrrd", "good_l.nrrd"),
        ("f", "p6", 0, "b.nrrd", "good_l.nrrd"),
        ("g", "p7", 1, "dcm", "l_dcm.nrrd"),  # the layer map cannot tell, DICOM can: depth down the rows
        ("g", "p8", 0, "b.nrrd", "good_l.nrrd"),
        ("../h", "p9", 1, "b.nrrd", "good_l.nrrd"),
    ]
    pd.DataFrame(rows, columns=["scan_id", "subject_id", "label", "bmode", "layers"]).to_csv(
        tmp_path / "m.tsv", sep="\t", index=False
    )
    code = main(["import", str(tmp_path / "m.tsv"), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert code == 1
    lines = text.splitlines()
    assert lines[0] == "layer import: 2 scan(s) converted, 7 refused"
    assert "refused g | m.tsv | scan_id appears twice" in lines
    assert "refused ../h | m.tsv | scan_id cannot name files: use letters, digits, '.', '_', '-'" in lines
    assert any(line.startswith("converted g | dcm | DICOM series (12 files)") and line.endswith("depth: axis 1 (DICOM image rows)") for line in lines)
    refused = {line.split(" | ")[0]: line for line in lines if line.startswith("refused ")}
    assert refused["refused a"] == (
        "refused a | l.nrrd | layers: cannot tell which array axis is depth (no dermis and muscle in the layer map): "
        "give --depth-axis"
    )
    assert "bmode: 3 components per voxel (RGB or vector): export grey values" in refused["refused b"]
    assert "bmode: a PNG image: layer import reads NRRD, MetaImage (.mha/.mhd), DICOM and NIfTI" in refused["refused c"]
    assert refused["refused d"] == "refused d | missing.nrrd | bmode: file not found"
    assert "bmode: a 2-D image of size (6, 6), expected a 3-D volume" in refused["refused e"]
    assert all(len(line) <= 200 for line in lines)
    sheet = pd.read_csv(tmp_path / "out" / "cohort.tsv", sep="\t")
    assert sheet["scan_id"].tolist() == ["f", "g"] and "swe" not in sheet.columns  # B-mode only
    assert sorted(p.name for p in (tmp_path / "out" / "scans").iterdir()) == [
        "f_bmode.nii.gz", "f_layers.nii.gz", "g_bmode.nii.gz", "g_layers.nii.gz"
    ]  # nothing of a refused scan
    # --depth-axis says what the file cannot: scan a converts with it
    code = main(["import", str(tmp_path / "m.tsv"), "--out", str(tmp_path / "out2"), "--depth-axis", "2"])
    assert "refused a " not in capsys.readouterr().out


def test_depth_first_keeps_positions_and_flips():
    """Every voxel of the reordered (and flipped) array maps to the mm position of its source voxel."""
    affine = itk_affine(_image(np.zeros((4, 3, 2), np.float32)))
    array = np.arange(24).reshape(2, 3, 4)  # (i, j, k)
    where = {int(v): np.array(i) for i, v in np.ndenumerate(array)}
    for axis in range(3):
        for flip in (False, True):
            out, new = depth_first(array, affine, axis, flip)
            assert out.shape == tuple(array.shape[a] for a in [axis] + [a for a in range(3) if a != axis])
            for idx, value in np.ndenumerate(out):
                np.testing.assert_allclose(new @ [*idx, 1], affine @ [*where[int(value)], 1], atol=1e-9)


def test_kpa_to_speed():
    np.testing.assert_allclose(kpa_to_speed(np.array([3.0, 12.0, np.nan, -1.0])), [1.0, 2.0, np.nan, np.nan])
