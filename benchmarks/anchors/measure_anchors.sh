#!/usr/bin/env bash
# Reproduce the figures in README.md: both anchors on the IBSI-1 CT phantom and on the
# seeded synthetic CT case, plus MIRP's IBSI-1 configuration C check.
# Usage: bash benchmarks/anchors/measure_anchors.sh [OUT_DIR]   (default /tmp/anchors_out)
# Needs the venvs from setup_anchors.sh. Run it on an otherwise idle machine: the runners
# are single-process and the figures move a lot with CPU contention.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-/tmp/anchors_out}"
IBSI="${IBSI_DIR:-/work/shared/data/ibsi1_ct}"   # non-commercial licence: never copy into the repo
SYNTH="$OUT/synthetic_case"
MIRP="$HERE/.venv-mirp/bin/python"
PYRAD="$HERE/.venv-pyradiomics/bin/python"
for py in "$MIRP" "$PYRAD"; do
    [[ -x "$py" ]] || { echo "measure_anchors: $py missing: run setup_anchors.sh first" >&2; exit 1; }
done
[[ -f "$IBSI/image.nii.gz" && -f "$IBSI/mask.nii.gz" ]] || { echo "measure_anchors: IBSI-1 case not found in $IBSI" >&2; exit 1; }
mkdir -p "$OUT"
cd "$HERE"
"$MIRP" make_synthetic_ct.py --out-dir "$SYNTH"
"$PYRAD" run_pyradiomics.py --image "$IBSI/image.nii.gz" --mask "$IBSI/mask.nii.gz" --out "$OUT/pyradiomics_ibsi1.json" --repeat 5
"$PYRAD" run_pyradiomics.py --image "$SYNTH/image.nii.gz" --mask "$SYNTH/mask.nii.gz" --out "$OUT/pyradiomics_synth.json" --repeat 5
"$MIRP" run_mirp.py --image "$IBSI/image.nii.gz" --mask "$IBSI/mask.nii.gz" --out "$OUT/mirp_ibsi1.json" --repeat 3
"$MIRP" run_mirp.py --image "$SYNTH/image.nii.gz" --mask "$SYNTH/mask.nii.gz" --out "$OUT/mirp_synth.json" --repeat 3
"$MIRP" run_mirp.py --image "$IBSI/image.nii.gz" --mask "$IBSI/mask.nii.gz" --out "$OUT/mirp_ibsi1_config_c.json" --repeat 0 --config ibsi_c
"$MIRP" check_ibsi_reference.py "$OUT/mirp_ibsi1_config_c.json" "$IBSI/reference_config_c.csv" || true
"$MIRP" - "$OUT" <<'PY'
import json, statistics, sys, os
print("%-21s %-18s %8s %8s %8s  %s" % ("result", "tool", "features", "import", "first", "repeats (median)"))
for name in ("pyradiomics_ibsi1", "pyradiomics_synth", "mirp_ibsi1", "mirp_synth", "mirp_ibsi1_config_c"):
    d = json.load(open(os.path.join(sys.argv[1], name + ".json")))
    s = d["seconds"]
    print("%-21s %-18s %8d %7.2fs %7.2fs  %s%s" % (
        name, d["tool"] + " " + d["version"], d["n_features"], d["import_seconds"], d["first_call_seconds"],
        ", ".join("%.2f" % x for x in s), " (%.2f)" % statistics.median(s) if s else "-"))
PY
