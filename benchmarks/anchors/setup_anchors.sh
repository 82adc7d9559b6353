#!/usr/bin/env bash
# Build the isolated "anchor" environments used to benchmark medimg_fast against
# MIRP and PyRadiomics. Neither tool is (or may become) a dependency of medimg_fast:
# each lives in its own venv here and is only ever run as a subprocess via
# run_mirp.py / run_pyradiomics.py.
#
# Idempotent: an existing venv is reused and pip only installs what is missing.
# Usage: bash benchmarks/anchors/setup_anchors.sh [mirp|pyradiomics|all]   (default: all)
# Env overrides: PYTHON311=/path/to/python3.11  PYTHON39=/path/to/python3.9
#                FORCE=1 (delete and rebuild the venvs)
#                UNLOCKED=1 (ignore constraints-{mirp,pyradiomics}.txt, i.e. resolve the newest
#                           dependency versions; refresh a lock with
#                           .venv-X/bin/python -m pip freeze and the header line kept)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WHAT="${1:-all}"

# Pins. MIRP 2.7.0 needs Python >= 3.11 (numpy>=2.4, pandas>=3, scipy>=1.17).
# PyRadiomics 3.1.0's only binary on PyPI is a cp39 manylinux wheel (installed with
# --only-binary, never built from source) and it is not numpy-2 compatible, hence
# python3.9 + numpy<2.
MIRP_PIN="mirp==2.7.0"
PYRAD_PIN="pyradiomics==3.1.0"

constraint_args() {  # $1 = lock name (mirp|pyradiomics) -> "-c FILE" unless UNLOCKED=1 or absent
    local f="$HERE/constraints-$1.txt"
    if [[ "${UNLOCKED:-0}" != "1" && -f "$f" ]]; then echo "-c $f"; fi
}

die() { echo "setup_anchors: ERROR: $*" >&2; exit 1; }

find_python() {  # $1 = minor version, e.g. 3.11; $2 = override path (may be empty)
    local ver="$1" override="$2" cand
    if [[ -n "$override" ]]; then
        [[ -x "$override" ]] || die "override interpreter '$override' is not executable"
        echo "$override"; return 0
    fi
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    # Prefer a pyenv-installed interpreter (newest patch release), then PATH.
    for cand in $(ls -d "$pyenv_root"/versions/"$ver".* 2>/dev/null | sort -V -r); do
        if [[ -x "$cand/bin/python$ver" ]]; then echo "$cand/bin/python$ver"; return 0; fi
    done
    if command -v "python$ver" >/dev/null 2>&1; then
        cand="$(command -v "python$ver")"
        if "$cand" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$ver'.split('.')))" 2>/dev/null; then
            echo "$cand"; return 0
        fi
    fi
    return 1
}

pip_install() {  # $1 = venv dir, rest = pip install arguments. Quiet; shows pip's output on failure.
    local venv="$1"; shift
    local log; log="$(mktemp)"
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
        grep -v "^WARNING: Location 'file:" "$log" >&2 || true
        rm -f "$log"
        die "pip install $* failed in $venv"
    fi
    # Keep real warnings, drop the noise about this machine's local file:// index mirrors.
    grep -v "^WARNING: Location 'file:" "$log" || true
    rm -f "$log"
}

make_venv() {  # $1 = interpreter, $2 = venv dir
    local py="$1" venv="$2" want
    want="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "${FORCE:-0}" == "1" && -d "$venv" ]]; then
        echo "  FORCE=1: removing $venv"; rm -rf "$venv"
    fi
    if [[ -x "$venv/bin/python" ]] && [[ "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" == "$want" ]]; then
        echo "  reusing existing venv $venv (Python $want)"
    else
        [[ -e "$venv" ]] && echo "  existing $venv is broken or not Python $want: rebuilding"
        rm -rf "$venv"
        echo "  creating venv $venv with $py ($("$py" -V 2>&1))"
        "$py" -m venv "$venv"
        pip_install "$venv" --upgrade pip
    fi
}

report() {  # $1 = venv dir, rest = distribution names
    local venv="$1"; shift
    "$venv/bin/python" - "$@" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
print(f"  python      {sys.version.split()[0]}  ({sys.executable})")
for name in sys.argv[1:]:
    try:
        print(f"  {name:<11} {version(name)}")
    except PackageNotFoundError:
        print(f"  {name:<11} MISSING")
PY
}

build_mirp() {
    local py venv="$HERE/.venv-mirp"
    echo "== MIRP anchor =="
    py="$(find_python 3.11 "${PYTHON311:-}")" || die "Python 3.11 not found (needed for MIRP). Install it (e.g. 'pyenv install 3.11') or set PYTHON311=/path/to/python3.11."
    make_venv "$py" "$venv"
    # shellcheck disable=SC2046
    pip_install "$venv" $(constraint_args mirp) "$MIRP_PIN" nibabel
    "$venv/bin/python" -c "import mirp, nibabel" || die "MIRP venv built but 'import mirp' fails"
    report "$venv" mirp numpy scipy pandas itk scikit-image nibabel
}

build_pyradiomics() {
    local py venv="$HERE/.venv-pyradiomics"
    echo "== PyRadiomics anchor =="
    py="$(find_python 3.9 "${PYTHON39:-}")" || die "Python 3.9 not found (PyRadiomics 3.1.0 only has a cp39 wheel). Install it (e.g. 'pyenv install 3.9') or set PYTHON39=/path/to/python3.9."
    make_venv "$py" "$venv"
    # --only-binary for pyradiomics: never fall back to a source build.
    # shellcheck disable=SC2046
    pip_install "$venv" $(constraint_args pyradiomics) --only-binary=pyradiomics "numpy<2" "$PYRAD_PIN" SimpleITK nibabel
    "$venv/bin/python" -c "import radiomics, SimpleITK, nibabel" || die "PyRadiomics venv built but 'import radiomics' fails"
    report "$venv" pyradiomics numpy SimpleITK PyWavelets nibabel
}

case "$WHAT" in
    mirp) build_mirp ;;
    pyradiomics) build_pyradiomics ;;
    all) build_mirp; build_pyradiomics ;;
    *) die "unknown target '$WHAT' (use mirp, pyradiomics or all)" ;;
esac

echo "== done =="
[[ "$WHAT" == all || "$WHAT" == mirp ]] && echo "  MIRP:        $HERE/.venv-mirp/bin/python $HERE/run_mirp.py --help"
[[ "$WHAT" == all || "$WHAT" == pyradiomics ]] && echo "  PyRadiomics: $HERE/.venv-pyradiomics/bin/python $HERE/run_pyradiomics.py --help"
exit 0
