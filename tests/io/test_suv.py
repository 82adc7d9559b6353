"""PET SUV body weight against hand computations from the values written into the headers."""

import re

import numpy as np
import pytest
from _pet_series import CT5N, F18_HALF_LIFE_S, write_pet_series

from medimg_fast.io import SuvError, open_volume, save_volume

WEIGHT_G = 70_000.0
DOSE_BQ = 370e6
# float32 data after two roundings (rescale, then the SUV factor): a few ulps.
RTOL = 1e-6


def _suv_by_hand(activity, decay_time_s, dose_bq=DOSE_BQ, half_life_s=F18_HALF_LIFE_S):
    decayed = dose_bq * 0.5 ** (decay_time_s / half_life_s)
    return activity * WEIGHT_G / decayed


def test_suv_start_one_hour_after_injection(tmp_path):
    _, activity = write_pet_series(tmp_path)  # injection 10:00, series 11:00
    vol = open_volume(tmp_path, units="suv")
    assert vol.data.dtype == np.float32
    assert vol.metadata["units"] == "SUVbw"
    assert vol.metadata["suv"]["decay_time_s"] == pytest.approx(3600.0)
    assert vol.metadata["suv"]["scan_time_from"] == "SeriesTime"
    np.testing.assert_allclose(np.asarray(vol.data), _suv_by_hand(activity, 3600.0), rtol=RTOL)
    # decayed dose: 370 MBq * 2^(-3600/6586.2) = 253.32 MBq, so SUV = A * 70000 / 2.5332e8
    assert _suv_by_hand(1.0, 3600.0) == pytest.approx(70_000 / 2.5332e8, rel=1e-4)


def test_stored_units_are_activity_concentration(tmp_path):
    _, activity = write_pet_series(tmp_path)
    for units in (None, "stored"):
        vol = open_volume(tmp_path, units=units)
        np.testing.assert_allclose(np.asarray(vol.data), activity, rtol=RTOL)
        assert "suv" not in vol.metadata


def test_decay_correction_admin_uses_the_full_dose(tmp_path):
    _, activity = write_pet_series(tmp_path, decay_correction="ADMIN")
    vol = open_volume(tmp_path, units="suv")
    assert vol.metadata["suv"]["decay_time_s"] == 0.0
    np.testing.assert_allclose(np.asarray(vol.data), activity * WEIGHT_G / DOSE_BQ, rtol=RTOL)


@pytest.mark.parametrize("kwargs", [
    # times only: a scan earlier in the day than the injection is the next day
    {"injection_time": "233000", "series_time": "003000"},
    # full date-times across midnight
    {"injection_datetime": "20231231233000", "injection_time": "233000",
     "series_date": "20240101", "series_time": "003000"},
], ids=["time-only", "datetime"])
def test_injection_before_midnight_scan_after(tmp_path, kwargs):
    _, activity = write_pet_series(tmp_path, **kwargs)
    vol = open_volume(tmp_path, units="suv")
    assert vol.metadata["suv"]["decay_time_s"] == pytest.approx(3600.0)
    np.testing.assert_allclose(np.asarray(vol.data), _suv_by_hand(activity, 3600.0), rtol=RTOL)


def test_start_datetime_takes_precedence_and_counts_days(tmp_path):
    # The date-time says the injection was a day and an hour earlier; the time alone
    # would say one hour.
    _, activity = write_pet_series(tmp_path, injection_datetime="20231231100000",
                                   injection_time="100000", series_date="20240101")
    vol = open_volume(tmp_path, units="suv")
    assert vol.metadata["suv"]["decay_time_s"] == pytest.approx(86400.0 + 3600.0)
    np.testing.assert_allclose(np.asarray(vol.data), _suv_by_hand(activity, 90000.0),
                               rtol=RTOL)


def test_post_processed_series_time_falls_back_to_acquisition(tmp_path):
    # A re-reconstructed series: SeriesTime 12:00 is after the acquisition at 11:00.
    _, activity = write_pet_series(tmp_path, series_time="120000", acquisition_time="110000")
    vol = open_volume(tmp_path, units="suv")
    assert vol.metadata["suv"]["scan_time_from"] == "AcquisitionTime"
    np.testing.assert_allclose(np.asarray(vol.data), _suv_by_hand(activity, 3600.0), rtol=RTOL)


@pytest.mark.parametrize("omit, omit_item, named", [
    (("PatientWeight",), (), "PatientWeight (0010,1030)"),
    (("Units",), (), "Units (0054,1001)"),
    (("DecayCorrection",), (), "DecayCorrection (0054,1102)"),
    (("RadiopharmaceuticalInformationSequence",), (),
     "RadiopharmaceuticalInformationSequence (0054,0016)"),
    ((), ("RadionuclideTotalDose",), "RadionuclideTotalDose (0018,1074)"),
    ((), ("RadionuclideHalfLife",), "RadionuclideHalfLife (0018,1075)"),
    ((), ("RadiopharmaceuticalStartTime",), "RadiopharmaceuticalStartTime (0018,1072)"),
    (("SeriesTime", "AcquisitionTime"), (), "SeriesTime (0008,0031)"),
])
def test_missing_tag_is_named(tmp_path, omit, omit_item, named):
    write_pet_series(tmp_path, omit=omit, omit_radiopharmaceutical=omit_item)
    with pytest.raises(SuvError, match=re.escape(named)):
        open_volume(tmp_path, units="suv")
    open_volume(tmp_path)  # the stored values still read


@pytest.mark.parametrize("kwargs, message", [
    ({"units": "CNTS"}, "Units (0054,1001) is 'CNTS'"),
    ({"weight_kg": "0"}, "PatientWeight (0010,1030) must be a positive number, got '0'"),
    ({"decay_correction": "NONE"}, "DecayCorrection (0054,1102) is 'NONE'"),
    ({"injection_datetime": "20240101120000", "injection_time": "120000"},
     "s after the scan"),
])
def test_invalid_values_are_refused(tmp_path, kwargs, message):
    write_pet_series(tmp_path, **kwargs)
    with pytest.raises(SuvError, match=re.escape(message)):
        open_volume(tmp_path, units="suv")


def test_non_pet_names_its_modality(tmp_path):
    with pytest.raises(SuvError, match="Modality 'CT'"):
        open_volume(CT5N, units="suv")
    path = save_volume(np.ones((2, 3, 4), np.float32), tmp_path / "v.zarr")
    with pytest.raises(SuvError, match="got a zarr input"):
        open_volume(path, units="suv")
    assert issubclass(SuvError, ValueError)


def test_units_validated(tmp_path):
    write_pet_series(tmp_path)
    with pytest.raises(ValueError, match="`units` must be one of"):
        open_volume(tmp_path, units="SUVlbm")
