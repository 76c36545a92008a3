"""Synthetic, obviously fake DICOM studies for the tests and the demo: no real patient data.

A ``StudySpec`` describes a study and its series; ``datasets`` turns it into one small but
valid DICOM instance per image (an 8x8 picture), and ``to_bytes`` into Part 10 file bytes
for an upload. The UIDs come from the spec, so making the same study twice gives the same
UIDs. ``ct_study``, ``mr_study`` and ``pet_study`` are ready-made studies with realistic
defaults; change anything else with ``dataclasses.replace``.

A field left at ``None`` leaves its attribute out of the instances, so a test can make a
study that lacks it; attributes that DICOM requires but allows empty (Type 2: SliceThickness,
and KVP on CT) are then present and empty instead.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from io import BytesIO

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

SOP_CLASSES: dict[str, UID] = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "PT": PositronEmissionTomographyImageStorage,
}
FDG = "Fludeoxyglucose F^18^"
IMAGE_SIZE = 8  # rows and columns of every image
PIXEL_SPACING = 50.0  # mm: 8 pixels cover a 400 mm field of view
_UID_SEED = "hiro-monitor synthetic study"


@dataclass(frozen=True, kw_only=True)
class SeriesSpec:
    """One series of a synthetic study; ``None`` leaves that attribute out (or empty if Type 2)."""

    description: str
    modality: str  # "CT", "MR" or "PT"
    instances: int
    series_number: int = 1
    slice_thickness: float | None = None  # mm; also the step between image positions
    kvp: float | None = None
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    contrast_agent: str | None = None  # ContrastBolusAgent
    field_strength: float | None = None  # MagneticFieldStrength, tesla (MR)
    acquisition_time: str | None = None  # HHMMSS
    radiopharmaceutical_start: str | None = None  # HHMMSS, the injection (PT)
    radionuclide_total_dose: float = 370e6  # Bq at the injection (PT)

    def __post_init__(self) -> None:
        if self.modality not in SOP_CLASSES:
            raise ValueError(f"unsupported modality {self.modality!r}: one of {sorted(SOP_CLASSES)}")
        if self.instances < 1:
            raise ValueError(f"a series needs at least one instance, not {self.instances}")


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A synthetic study: fake patient, order, device and its series."""

    patient_id: str
    accession: str
    study_date: dt.date
    series: tuple[SeriesSpec, ...]
    patient_name: str = "TEST^PATIENT"
    patient_sex: str = "O"
    birth_date: dt.date = dt.date(1970, 1, 1)
    study_time: str = "090000"  # HHMMSS
    modality: str = "CT"  # the study's main modality
    study_description: str = ""
    manufacturer: str = "SYNTHETIC"
    model: str = "FAKE SCANNER"
    station_name: str = "FAKE01"
    device_serial: str = "SYN-0001"
    institution: str = "SYNTHETIC TEST HOSPITAL"
    study_uid: str | None = None  # derived from the spec when None

    def __post_init__(self) -> None:
        numbers = [series.series_number for series in self.series]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"series numbers must differ within a study: {numbers}")


def study_instance_uid(spec: StudySpec) -> UID:
    """The study's UID: ``spec.study_uid``, or one derived from the patient, accession and date."""
    if spec.study_uid is not None:
        return UID(spec.study_uid)
    return _uid("study", spec.patient_id, spec.accession, spec.study_date.isoformat(), spec.study_time)


def series_instance_uid(spec: StudySpec, series: SeriesSpec) -> UID:
    """The series' UID, derived from the study's UID and the series number."""
    return _uid("series", study_instance_uid(spec), str(series.series_number))


def datasets(spec: StudySpec) -> Iterator[Dataset]:
    """One DICOM instance per image of every series of ``spec``, in series then instance order."""
    study_uid = study_instance_uid(spec)
    frame_uid = _uid("frame of reference", study_uid)
    for series in spec.series:
        series_uid = series_instance_uid(spec, series)
        for number in range(1, series.instances + 1):
            ds = _new_instance(series.modality, _uid("instance", series_uid, str(number)))
            _set_patient_and_study(ds, spec, study_uid)
            _set_equipment(ds, spec)
            _set_series(ds, spec, series, series_uid, frame_uid)
            _set_image(ds, series, number)
            _set_modality(ds, series)
            yield ds


def with_repeat(spec: StudySpec, thickness: float, acquisition_time: str, instances: int = 20) -> StudySpec:
    """``spec`` with one more axial contrast CT series, ``thickness`` mm, numbered after the
    others: the technologist's repeat of a series, sent into the same study."""
    repeat = SeriesSpec(
        description=f"PORTAL VENOUS {thickness:g}mm REPEAT",
        modality="CT",
        instances=instances,
        series_number=max(series.series_number for series in spec.series) + 1,
        slice_thickness=thickness,
        kvp=120.0,
        contrast_agent="IOHEXOL",
        acquisition_time=acquisition_time,
    )
    return replace(spec, series=(*spec.series, repeat))


def to_bytes(dataset: Dataset) -> bytes:
    """The instance as a DICOM Part 10 file (preamble, file meta, Explicit VR Little Endian)."""
    buffer = BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def ct_study(
    *,
    patient_id: str = "TEST-CT-0001",
    accession: str = "TESTACC-CT-0001",
    study_date: dt.date = dt.date(2024, 3, 4),
    study_time: str = "093000",
    scout_instances: int = 2,
    axial_instances: int = 40,
    slice_thickness: float = 2.5,
    kvp: float = 120.0,
    contrast_agent: str | None = "IOHEXOL",
) -> StudySpec:
    """A contrast CT of chest, abdomen and pelvis: a scout and a portal venous axial series."""
    scout = SeriesSpec(
        description="Scout",
        modality="CT",
        instances=scout_instances,
        series_number=1,
        kvp=kvp,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        acquisition_time=study_time,
    )
    axial = SeriesSpec(
        description=f"PORTAL VENOUS {slice_thickness:g}mm",
        modality="CT",
        instances=axial_instances,
        series_number=2,
        slice_thickness=slice_thickness,
        kvp=kvp,
        contrast_agent=contrast_agent,
        acquisition_time=_add_minutes(study_time, 2),
    )
    return StudySpec(
        patient_id=patient_id,
        accession=accession,
        study_date=study_date,
        study_time=study_time,
        modality="CT",
        study_description="CT CHEST ABD PELVIS W CONTRAST",
        model="FAKE CT 64",
        station_name="FAKECT01",
        device_serial="SYN-CT-0001",
        series=(scout, axial),
    )


def mr_study(
    *,
    patient_id: str = "TEST-MR-0001",
    accession: str = "TESTACC-MR-0001",
    study_date: dt.date = dt.date(2024, 3, 4),
    study_time: str = "140000",
    instances: int = 20,
    slice_thickness: float = 5.0,
    field_strength: float = 3.0,
    contrast_agent: str | None = "GADOTERATE",
) -> StudySpec:
    """A brain MR with and without contrast: T1 before, FLAIR, T1 after gadolinium."""

    def series(number: int, description: str, minutes: int, agent: str | None = None) -> SeriesSpec:
        return SeriesSpec(
            description=description,
            modality="MR",
            instances=instances,
            series_number=number,
            slice_thickness=slice_thickness,
            contrast_agent=agent,
            field_strength=field_strength,
            acquisition_time=_add_minutes(study_time, minutes),
        )

    return StudySpec(
        patient_id=patient_id,
        accession=accession,
        study_date=study_date,
        study_time=study_time,
        modality="MR",
        study_description="MR BRAIN W WO CONTRAST",
        model=f"FAKE MR {field_strength:g}T",
        station_name="FAKEMR01",
        device_serial="SYN-MR-0001",
        series=(
            series(1, "T1 AX PRE", 2),
            series(2, "FLAIR AX", 8),
            series(3, "T1 AX POST GAD", 20, contrast_agent),
        ),
    )


def pet_study(
    *,
    patient_id: str = "TEST-PT-0001",
    accession: str = "TESTACC-PT-0001",
    study_date: dt.date = dt.date(2024, 3, 4),
    injection_time: str = "080000",
    uptake_minutes: int = 60,
    ct_instances: int = 10,
    pet_instances: int = 20,
    slice_thickness: float = 3.27,
) -> StudySpec:
    """An FDG PET/CT: a low-dose CT for attenuation correction, then the PET ``uptake_minutes``
    after the injection."""
    scan_time = _add_minutes(injection_time, uptake_minutes)
    ctac = SeriesSpec(
        description="CT ATTENUATION CORRECTION",
        modality="CT",
        instances=ct_instances,
        series_number=1,
        slice_thickness=slice_thickness,
        kvp=120.0,
        acquisition_time=scan_time,
    )
    pet = SeriesSpec(
        description="PET WB AC",
        modality="PT",
        instances=pet_instances,
        series_number=2,
        slice_thickness=slice_thickness,
        acquisition_time=_add_minutes(scan_time, 2),
        radiopharmaceutical_start=injection_time,
    )
    return StudySpec(
        patient_id=patient_id,
        accession=accession,
        study_date=study_date,
        study_time=scan_time,
        modality="PT",
        study_description="PET CT FDG SKULL BASE TO THIGH",
        model="FAKE PET CT",
        station_name="FAKEPT01",
        device_serial="SYN-PT-0001",
        series=(ctac, pet),
    )


def _uid(*parts: str) -> UID:
    """A UID under pydicom's root, the same for the same parts."""
    return generate_uid(entropy_srcs=[_UID_SEED, *parts])


def _add_minutes(hhmmss: str, minutes: int) -> str:
    """``hhmmss`` plus ``minutes`` (wrapping past midnight), as HHMMSS."""
    time = dt.datetime.strptime(hhmmss, "%H%M%S") + dt.timedelta(minutes=minutes)
    return time.strftime("%H%M%S")


def _new_instance(modality: str, sop_instance_uid: UID) -> Dataset:
    """An empty instance of the modality's image storage class, with its file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def _set_patient_and_study(ds: Dataset, spec: StudySpec, study_uid: UID) -> None:
    """The Patient and General Study modules."""
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = spec.birth_date.strftime("%Y%m%d")
    ds.PatientSex = spec.patient_sex
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = spec.study_date.strftime("%Y%m%d")
    ds.StudyTime = spec.study_time
    ds.StudyID = "1"
    ds.AccessionNumber = spec.accession
    ds.StudyDescription = spec.study_description
    ds.ReferringPhysicianName = ""


def _set_equipment(ds: Dataset, spec: StudySpec) -> None:
    """The General Equipment module."""
    ds.Manufacturer = spec.manufacturer
    ds.ManufacturerModelName = spec.model
    ds.StationName = spec.station_name
    ds.DeviceSerialNumber = spec.device_serial
    ds.InstitutionName = spec.institution


def _set_series(ds: Dataset, spec: StudySpec, series: SeriesSpec, series_uid: UID, frame_uid: UID) -> None:
    """The General Series and Frame of Reference modules."""
    ds.Modality = series.modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDescription = series.description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = series.acquisition_time or spec.study_time
    ds.Laterality = ""
    if series.modality != "PT":  # PET says it with its patient orientation code sequences
        ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""


def _set_image(ds: Dataset, series: SeriesSpec, number: int) -> None:
    """The General Image, Image Plane and Image Pixel modules: an 8x8 16-bit picture."""
    step = series.slice_thickness if series.slice_thickness is not None else 1.0
    location = round(-(number - 1) * step, 3)  # feet-first: each slice lower than the last
    ds.InstanceNumber = number
    ds.ImageType = list(series.image_type)
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.SeriesTime
    if series.acquisition_time is not None:
        ds.AcquisitionDate = ds.StudyDate
        ds.AcquisitionTime = series.acquisition_time
    ds.SliceThickness = series.slice_thickness  # Type 2: empty when unknown
    ds.ImagePositionPatient = [-200.0, -200.0, location]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceLocation = location
    ds.PixelSpacing = [PIXEL_SPACING, PIXEL_SPACING]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = IMAGE_SIZE
    ds.Columns = IMAGE_SIZE
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = _pixels(number)


def _pixels(number: int) -> bytes:
    """A little-endian uint16 gradient that shifts with the instance number."""
    values = [
        (row * IMAGE_SIZE + column + number) * 64 & 0xFFFF  # any number of images: wrap around
        for row in range(IMAGE_SIZE)
        for column in range(IMAGE_SIZE)
    ]
    return struct.pack(f"<{len(values)}H", *values)


def _set_modality(ds: Dataset, series: SeriesSpec) -> None:
    """Attributes of the CT, MR or PET image modules, and the contrast given."""
    if series.contrast_agent is not None:
        ds.ContrastBolusAgent = series.contrast_agent
    if series.modality == "CT":
        ds.KVP = series.kvp  # Type 2: empty when unknown
        ds.AcquisitionNumber = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
    elif series.kvp is not None:
        ds.KVP = series.kvp
    elif series.modality == "MR":
        _set_mr(ds, series)
    else:
        _set_pet(ds, series)


def _set_mr(ds: Dataset, series: SeriesSpec) -> None:
    """The MR Image module: a 2D spin echo."""
    if series.field_strength is not None:
        ds.MagneticFieldStrength = series.field_strength
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = 500.0
    ds.EchoTime = 10.0
    ds.EchoTrainLength = 1


def _set_pet(ds: Dataset, series: SeriesSpec) -> None:
    """The PET Series, PET Isotope and PET Image modules: a static, decay corrected FDG image."""
    ds.SeriesType = ["STATIC", "IMAGE"]
    ds.CollimatorType = "NONE"
    ds.PatientOrientationCodeSequence = []  # Type 2: empty
    ds.PatientGantryRelationshipCodeSequence = []
    ds.Units = "BQML"
    ds.CountsSource = "EMISSION"
    ds.CorrectedImage = ["ATTN", "DECY"]
    ds.DecayCorrection = "START"
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.ImageIndex = ds.InstanceNumber
    ds.NumberOfSlices = series.instances
    ds.FrameReferenceTime = 0.0
    ds.ActualFrameDuration = 120_000  # ms
    ds.DecayFactor = 1.0
    if series.radiopharmaceutical_start is not None:
        ds.RadiopharmaceuticalInformationSequence = [_fdg(series)]


def _fdg(series: SeriesSpec) -> Dataset:
    """The Radiopharmaceutical Information Sequence item of an FDG injection."""
    item = Dataset()
    item.Radiopharmaceutical = FDG
    item.RadiopharmaceuticalStartTime = series.radiopharmaceutical_start
    item.RadionuclideTotalDose = series.radionuclide_total_dose
    item.RadionuclideHalfLife = 6586.2  # s, fluorine-18
    item.RadionuclideCodeSequence = [_code("77004003", "SCT", "^18^Fluorine")]
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item
