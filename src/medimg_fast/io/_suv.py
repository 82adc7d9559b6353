"""PET standardised uptake values: SUV body weight (SUVbw) from the DICOM header.

The DICOM reader keeps the header values SUV needs in ``Volume.metadata["pet"]``
(:func:`pet_header`); :func:`suv_bw_factor` turns them into one scale factor following the
QIBA / UW "SUV calculation" pseudo-code, and :func:`to_suv` applies it.
"""

from __future__ import annotations

import numpy as np

from ._volume import Volume, VolumeReadError

__all__ = ["SuvError", "pet_header", "suv_bw_factor", "to_suv"]

#: Decay correction codes of DecayCorrection (0054,1102) that :func:`suv_bw_factor` handles.
_HANDLED_DECAY_CORRECTIONS = ("START", "ADMIN")
_DAY_S = 86400.0
_RADIOPHARMACEUTICAL_KEYWORDS = ("RadionuclideTotalDose", "RadionuclideHalfLife",
                                 "RadiopharmaceuticalStartTime",
                                 "RadiopharmaceuticalStartDateTime")


class SuvError(VolumeReadError):
    """A volume that cannot be converted to SUV: not PET, not in Bq/mL, or a header value the
    conversion needs is missing or invalid (the message names the tag)."""


def _tag_name(keyword) -> str:
    """``"PatientWeight (0010,1030)"``: a keyword with its tag, for error messages."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword))
    return f"{keyword} ({tag.group:04X},{tag.element:04X})"


def _text(ds, keyword):
    """A header value as text (multi-valued: joined by backslash), or None when absent/empty."""
    value = ds.get(keyword, None)
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip() or None


def pet_header(slices) -> dict:
    """The header values SUV needs, from the slices (pydicom datasets) of one PET series.

    Values are kept as DICOM text so the dict stays plain (JSON-friendly) metadata; the
    series-level ones come from the first slice.  ``acquisitions`` lists every slice's
    (AcquisitionDate, AcquisitionTime).
    """
    first = slices[0]
    out = {k: _text(first, k) for k in ("Units", "DecayCorrection", "CorrectedImage",
                                         "SeriesDate", "SeriesTime", "PatientWeight")}
    sequence = first.get("RadiopharmaceuticalInformationSequence", None)
    if sequence:
        out["RadiopharmaceuticalInformationSequence"] = {
            k: _text(sequence[0], k) for k in _RADIOPHARMACEUTICAL_KEYWORDS}
    else:
        out["RadiopharmaceuticalInformationSequence"] = None
    out["acquisitions"] = [(_text(ds, "AcquisitionDate"), _text(ds, "AcquisitionTime"))
                           for ds in slices]
    return out


def _positive(text, keyword, source, where=""):
    if text is None:
        raise SuvError(f"{source}: cannot compute SUV: {_tag_name(keyword)}{where} is missing")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise SuvError(f"{source}: cannot compute SUV: {_tag_name(keyword)}{where} must be a "
                       f"positive number, got {text!r}")
    return value


def _moment(date_text, time_text, keyword, source):
    """(date or None, seconds since midnight) of a DA and a TM value."""
    from pydicom.valuerep import DA, TM

    try:
        t = TM(time_text)
        date = DA(date_text) if date_text else None
    except ValueError as exc:
        raise SuvError(f"{source}: cannot compute SUV: {_tag_name(keyword)} is not a valid "
                       f"DICOM time ({time_text!r}, date {date_text!r}): {exc}") from None
    seconds = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond * 1e-6
    return date, float(seconds)


def _datetime_moment(text, source):
    from pydicom.valuerep import DT

    try:
        dt = DT(text)
    except ValueError as exc:
        raise SuvError(f"{source}: cannot compute SUV: "
                       f"{_tag_name('RadiopharmaceuticalStartDateTime')} is not a valid DICOM "
                       f"date-time ({text!r}): {exc}") from None
    # The time-zone suffix, when written, is the scanner's own; series times carry none, so
    # both are taken as local times of the same site.
    seconds = dt.hour * 3600 + dt.minute * 60 + dt.second + dt.microsecond * 1e-6
    return dt.date(), float(seconds)


def _seconds_from(start, end):
    """Seconds from `start` to `end`, both (date or None, seconds since midnight).

    With both dates the difference is exact; without, the end is taken as the first such
    time after the start, i.e. a scan may cross midnight (the QIBA pseudo-code's "consider
    spanning midnight").
    """
    (d0, s0), (d1, s1) = start, end
    if d0 is not None and d1 is not None:
        return (d1 - d0).days * _DAY_S + (s1 - s0)
    delta = s1 - s0
    return delta + _DAY_S if delta < 0 else delta


def _signed_seconds(a, b):
    """``b - a`` in seconds; without both dates, the difference nearest zero."""
    (d0, s0), (d1, s1) = a, b
    if d0 is not None and d1 is not None:
        return (d1 - d0).days * _DAY_S + (s1 - s0)
    return (s1 - s0 + _DAY_S / 2) % _DAY_S - _DAY_S / 2


def _scan_moment(pet, source):
    """The moment the series' activity is decay-corrected to for DecayCorrection START."""
    acquisitions = [
        _moment(d, t, "AcquisitionTime", source) for d, t in pet.get("acquisitions") or []
        if t is not None
    ]
    earliest = None
    for moment in acquisitions:
        if earliest is None or _signed_seconds(moment, earliest) > 0:
            earliest = moment
    if pet.get("SeriesTime") is None:
        if earliest is None:
            raise SuvError(f"{source}: cannot compute SUV: {_tag_name('SeriesTime')} is "
                           f"missing (and no slice has {_tag_name('AcquisitionTime')})")
        return earliest, "AcquisitionTime"
    series = _moment(pet.get("SeriesDate"), pet["SeriesTime"], "SeriesTime", source)
    if earliest is not None and _signed_seconds(earliest, series) > 0:
        # A series time after the acquisition: a post-processed (re-reconstructed) series,
        # whose SeriesTime is not the start of the scan (QIBA; GE keeps the true one in a
        # private tag, the earliest AcquisitionTime is the portable fallback).
        return earliest, "AcquisitionTime"
    return series, "SeriesTime"


def suv_bw_factor(pet: dict, *, source="") -> tuple:
    """The factor that turns activity concentration (Bq/mL) into SUV body weight.

    Parameters
    ----------
    pet : dict
        The header values of :func:`pet_header` (``Volume.metadata["pet"]`` of a PET DICOM
        series).
    source : str
        Named in error messages.

    Returns
    -------
    factor : float
        ``weight_g / decayed_dose_bq``, in g/Bq (so SUV is in g/mL, conventionally unitless).
    details : dict
        ``weight_kg``, ``injected_dose_bq``, ``half_life_s``, ``decay_correction``,
        ``decay_time_s``, ``decayed_dose_bq``, ``scan_time_from`` (the tag the scan time was
        taken from, or None for ADMIN) and ``factor``.

    Raises
    ------
    SuvError
        When Units is not BQML, DecayCorrection is not START or ADMIN, a value is missing,
        not positive or not a valid time, or the injection is after the scan; the message
        names the tag with its keyword and (group,element).

    Notes
    -----
    See :func:`to_suv` for the formula.
    """
    units = pet.get("Units")
    if units is None:
        raise SuvError(f"{source}: cannot compute SUV: {_tag_name('Units')} is missing, so the "
                       "pixel values' unit is unknown (SUV needs BQML, Bq/mL)")
    if units.upper() != "BQML":
        raise SuvError(f"{source}: cannot compute SUV: {_tag_name('Units')} is {units!r}; "
                       "SUV body weight is computed from activity concentration, BQML (Bq/mL)")
    weight_kg = _positive(pet.get("PatientWeight"), "PatientWeight", source)
    info = pet.get("RadiopharmaceuticalInformationSequence")
    if not info:
        raise SuvError(f"{source}: cannot compute SUV: "
                       f"{_tag_name('RadiopharmaceuticalInformationSequence')} is missing or "
                       "empty (it holds the injected dose, half-life and injection time)")
    inside = f" in {_tag_name('RadiopharmaceuticalInformationSequence')}"
    dose_bq = _positive(info.get("RadionuclideTotalDose"), "RadionuclideTotalDose", source,
                        inside)
    half_life_s = _positive(info.get("RadionuclideHalfLife"), "RadionuclideHalfLife", source,
                            inside)
    correction = pet.get("DecayCorrection")
    if correction is None:
        raise SuvError(f"{source}: cannot compute SUV: {_tag_name('DecayCorrection')} is "
                       "missing, so the time the activity refers to is unknown")
    correction = correction.upper()
    if correction not in _HANDLED_DECAY_CORRECTIONS:
        raise SuvError(f"{source}: cannot compute SUV: {_tag_name('DecayCorrection')} is "
                       f"{correction!r}; supported are START (decay-corrected to the scan "
                       "start) and ADMIN (to the injection)")
    if correction == "ADMIN":
        decay_time_s, scan_from = 0.0, None
    else:
        if info.get("RadiopharmaceuticalStartDateTime"):
            injection = _datetime_moment(info["RadiopharmaceuticalStartDateTime"], source)
        elif info.get("RadiopharmaceuticalStartTime"):
            injection = _moment(None, info["RadiopharmaceuticalStartTime"],
                                "RadiopharmaceuticalStartTime", source)
        else:
            raise SuvError(f"{source}: cannot compute SUV: the injection time "
                           f"{_tag_name('RadiopharmaceuticalStartTime')} (or "
                           f"{_tag_name('RadiopharmaceuticalStartDateTime')}){inside} is "
                           "missing")
        scan, scan_from = _scan_moment(pet, source)
        decay_time_s = _seconds_from(injection, scan)
        if decay_time_s < 0:
            raise SuvError(f"{source}: cannot compute SUV: the injection "
                           f"({_tag_name('RadiopharmaceuticalStartDateTime')}) is "
                           f"{-decay_time_s:.0f} s after the scan ({_tag_name(scan_from)})")
    decayed_dose_bq = dose_bq * 2.0 ** (-decay_time_s / half_life_s)
    factor = weight_kg * 1000.0 / decayed_dose_bq
    details = {
        "weight_kg": weight_kg,
        "injected_dose_bq": dose_bq,
        "half_life_s": half_life_s,
        "decay_correction": correction,
        "decay_time_s": float(decay_time_s),
        "decayed_dose_bq": decayed_dose_bq,
        "scan_time_from": scan_from,
        "factor": factor,
    }
    return factor, details


def to_suv(volume: Volume) -> Volume:
    r"""Convert a PET DICOM volume in Bq/mL to SUV body weight, in place; returns it.

    Parameters
    ----------
    volume : Volume
        As read from a PET DICOM series (``modality == "PT"``), with rescale slope and
        intercept applied, so its values are activity concentrations.

    Returns
    -------
    Volume
        ``data`` in float32 SUV; ``metadata["units"] = "SUVbw"`` and ``metadata["suv"]``
        holds the values used (see :func:`suv_bw_factor`).

    Raises
    ------
    SuvError
        (a ValueError) for a volume that is not PET DICOM, or whose header lacks a value
        (the message names the tag).

    Notes
    -----
    Body-weight SUV, as in the QIBA / UW "SUV calculation" pseudo-code:

    .. math::

        \mathrm{SUV_{bw}} = \frac{A \cdot W}{D \cdot 2^{-\Delta t / T_{1/2}}}

    with :math:`A` the activity concentration in Bq/mL (stored value x RescaleSlope +
    RescaleIntercept, per slice; Units (0054,1001) must be BQML), :math:`W` the
    PatientWeight (0010,1030) in g (kg x 1000), :math:`D` the RadionuclideTotalDose
    (0018,1074) in Bq and :math:`T_{1/2}` the RadionuclideHalfLife (0018,1075) in s, both
    in the RadiopharmaceuticalInformationSequence (0054,0016).  :math:`\Delta t` follows
    DecayCorrection (0054,1102):

    - ``START``: the images are decay-corrected to the scan start, so the dose is decayed
      from the injection, RadiopharmaceuticalStartDateTime (0018,1078) or else
      RadiopharmaceuticalStartTime (0018,1072), to the SeriesDate/SeriesTime (0008,0021/0031).
      A series time later than the earliest AcquisitionTime (0008,0032) marks a
      post-processed series; the earliest acquisition is used then.  Without both dates, a
      scan time earlier in the day than the injection is taken as the next day (midnight).
    - ``ADMIN``: the images are decay-corrected to the injection, :math:`\Delta t = 0`.
    - ``NONE`` (not decay-corrected, each frame at its own time) is refused.

    The dose is not corrected for residual activity in the syringe (DICOM does not record
    it).  Reference: QIBA FDG-PET/CT technical committee, "SUV calculation" pseudo-code
    (Clunie, UW / QIBA wiki); Vacha et al., IBSI SUV computation.
    """
    modality = volume.modality
    if volume.metadata.get("format") != "dicom":
        raise SuvError(f"{volume.source}: units='suv' needs a PET DICOM series (the dose, times "
                       f"and weight are in its header), got a {volume.metadata.get('format')} "
                       "input")
    if modality != "PT":
        raise SuvError(f"{volume.source}: units='suv' applies to PET (Modality PT), but this "
                       f"series has Modality {modality!r}")
    pet = volume.metadata.get("pet")
    if pet is None:
        raise SuvError(f"{volume.source}: the PET header values were not kept by the reader")
    factor, details = suv_bw_factor(pet, source=volume.source)
    volume.data = (volume.data.astype(np.float64) * factor).astype(np.float32)
    volume.metadata["units"] = "SUVbw"
    volume.metadata["suv"] = details
    return volume
