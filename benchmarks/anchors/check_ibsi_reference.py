#!/usr/bin/env python3
"""Check a run_mirp.py result JSON against IBSI-1 reference values (stdlib only).

Sanity check that the MIRP anchor's settings mean what we think: run MIRP with
--config ibsi_c on the IBSI-1 CT phantom, then

  python3 check_ibsi_reference.py mirp_ibsi_c.json /work/shared/data/ibsi1_ct/reference_config_c.csv

MIRP feature names (e.g. cm_joint_max_d1_3d_v_mrg_fbs_w25.0) are mapped to IBSI tags
(cm_joint_max_3D_comb); a value passes when, rounded to 3 significant digits, it lies within
the tolerance of the reference. Exit status 0 when nothing fails.
"""
import json
import re
import sys


def ibsi_tag(mirp_name):
    k = re.sub(r"_(fbs_w|fbn_n)[0-9.]+", "", mirp_name)
    k = re.sub(r"_d1(\.0)?", "", k)
    k = re.sub(r"_a0(\.0)?", "", k)
    return k.replace("_3d_avg", "_3D_avg").replace("_3d_v_mrg", "_3D_comb").replace("_3d", "_3D")


def main(result_json, reference_csv):
    features = json.load(open(result_json))["features"]
    ref = {}
    with open(reference_csv) as fh:
        next(fh)
        for line in fh:
            value, tol, tag = line.strip().split(";")
            if value:
                ref[tag] = (float(value), float(tol))
    passed, failed, unmatched = 0, [], []
    for name, value in sorted(features.items()):
        tag = ibsi_tag(name)
        if tag not in ref:
            unmatched.append(name)
            continue
        r, tol = ref[tag]
        v3 = float(f"{value:.3g}") if value is not None else None
        if v3 is not None and abs(v3 - r) <= tol + 1e-12:
            passed += 1
        else:
            failed.append((name, value, r, tol))
    for name, value, r, tol in failed:
        print("FAIL %-45s %r (reference %r +- %r)" % (name, value, r, tol))
    print("%d passed, %d failed (%d features without a consensus reference value: %s)" % (
        passed, len(failed), len(unmatched), ", ".join(unmatched)))
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
