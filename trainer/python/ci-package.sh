#!/usr/bin/env bash
# The Python callback as a package (issue 14, item 3): installs ./trainer/python into a clean
# virtual environment as a user would (`pip install ./trainer/python`), runs the console command
# (`predictions-sync --help` must exit 0 and print its usage), checks that the module imports
# without transformers or torch and that type checkers see it as typed (py.typed), repeats the
# install on Python 3.9 (the declared floor) when this machine has one, then lints and
# type-checks predictions_callback.py and examples/ with ruff and mypy (their settings are in
# trainer/python/pyproject.toml).
#
# Everything comes from this machine's local package indexes (the public index is unreachable and
# pip would retry it for minutes). ruff and mypy live in a tools environment cached outside the
# repository, keyed by what decides its contents. Usage: trainer/python/ci-package.sh
# Exit codes: 0 every check passed; 1 a check failed (each is named); 4 the tools environment
# could not be built.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
RUFF=ruff==0.16.9
MYPY=mypy==2.4.0
PIP_SOURCES=(--index-url file:///opt/pypi/simple --extra-index-url file:///opt/pypi-more/simple --find-links /opt/wheels)
# Build isolation (hatchling, from [build-system]) is a pip of its own: it gets the same sources.
export PIP_INDEX_URL=file:///opt/pypi/simple PIP_EXTRA_INDEX_URL=file:///opt/pypi-more/simple PIP_FIND_LINKS=/opt/wheels
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

step() { printf '\n== %s\n' "$*"; }
FAILED=()
check() {
  # check NAME COMMAND...: runs it, says how it went, and remembers a failure without stopping.
  local name=$1
  shift
  if "$@"; then
    echo "ok: $name"
  else
    echo "FAILED: $name" >&2
    FAILED+=("$name")
  fi
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- the tools environment (ruff, mypy) -------------------------------------------------------------
KEY_TEXT=$(
  printf 'layout 1\n'
  "$PYTHON" -c 'import sys; print(sys.version)'
  printf '%s\n' "$RUFF" "$MYPY" "${PIP_SOURCES[@]}"
)
HASH=$(printf '%s' "$KEY_TEXT" | sha256sum | cut -c1-12)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/predictions-monolith
TOOLS=$CACHE/py-tools-$HASH
mkdir -p "$CACHE"

step "tools environment (ruff, mypy)"
exec 9>"$CACHE/.py-tools.lock"
flock 9
if [ -f "$TOOLS/.complete" ] && [ -x "$TOOLS/bin/ruff" ] && [ -x "$TOOLS/bin/mypy" ]; then
  echo "reusing $TOOLS"
else
  echo "building $TOOLS"
  rm -rf "$TOOLS"
  if ! { "$PYTHON" -m venv "$TOOLS" && "$TOOLS/bin/python" -m pip install -q "${PIP_SOURCES[@]}" "$RUFF" "$MYPY" >"$WORK/tools.log" 2>&1; }; then
    cat "$WORK/tools.log" >&2
    rm -rf "$TOOLS"
    echo "could not build the tools environment from the local indexes" >&2
    exit 4
  fi
  # Written last: an interrupted build is never mistaken for a finished one.
  printf '%s\n' "$KEY_TEXT" >"$TOOLS/.complete"
fi
flock -u 9
"$TOOLS/bin/ruff" --version
"$TOOLS/bin/mypy" --version

# --- install as a user does --------------------------------------------------------------------------
# install_into PYTHON NAME WHAT: a clean venv, `pip install WHAT` (from the repository root), the console command.
install_into() {
  local python=$1 name=$2 what=$3
  local venv=$WORK/$name
  "$python" -m venv "$venv" || return 1
  # hatchling builds without writing into the source tree (no build/, no *.egg-info left behind).
  (cd "$ROOT" && "$venv/bin/python" -m pip install -q "${PIP_SOURCES[@]}" "$what") 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2) || return 1
  local help status=0
  help=$("$venv/bin/predictions-sync" --help) || status=$?
  printf '%s\n' "$help" | sed 's/^/  | /'
  if [ $status -ne 0 ]; then
    echo "predictions-sync --help exited with $status" >&2
    return 1
  fi
  if ! grep -q '^usage:' <<<"$help"; then
    echo "predictions-sync --help printed no usage line" >&2
    return 1
  fi
}

step "pip install ./trainer/python into a clean environment ($("$PYTHON" --version))"
check "install and predictions-sync --help" install_into "$PYTHON" venv ./trainer/python
VENV=$WORK/venv

step "the installed package"
# Standard library only: importing it must not need transformers or torch (the clean venv has neither).
check "imports without transformers or torch" "$VENV/bin/python" - <<'EOF'
import importlib.util
import sys

import predictions_callback

for heavy in ("transformers", "torch"):
    assert importlib.util.find_spec(heavy) is None, f"{heavy} is installed in the clean environment"
    assert heavy not in sys.modules, f"importing predictions_callback imported {heavy}"
print(f"predictions_callback from {predictions_callback.__file__}")
EOF
# A user's code type-checked against the installed package: a mistake must be reported, which
# only happens when mypy reads the package's types (py.typed); untyped, the module would be Any.
cat >"$WORK/user_code.py" <<'EOF'
from predictions_callback import PredictionsCallback

callback = PredictionsCallback([{"prompt": "2 + 2 =", "completion": "4"}], sample_frequency="eval")
flushed: bool = callback.flush(timeout="soon")
EOF
typed_check() {
  local output
  output=$(cd "$WORK" && "$TOOLS/bin/mypy" --no-incremental --python-executable "$VENV/bin/python" --strict user_code.py 2>&1) && {
    echo "mypy accepted a call with a wrong argument type: the package is not read as typed" >&2
    return 1
  }
  printf '%s\n' "$output" | sed 's/^/  | /'
  if grep -qE 'import-untyped|missing library stubs or py.typed' <<<"$output"; then
    echo "mypy does not see py.typed in the installed package" >&2
    return 1
  fi
  grep -q 'user_code.py:4: error: Argument "timeout"' <<<"$output"
}
check "typed for mypy (py.typed)" typed_check

# The declared floor, requires-python >= 3.9: install and run there too when this machine has it.
# (A pyenv shim named python3.9 exists even where no 3.9 is selected: each candidate must run.)
PY39=
for candidate in "$(command -v python3.9 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9*/bin/python3.9; do
  if [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 9)' 2>/dev/null; then
    PY39=$candidate
  fi
done
if [ -n "$PY39" ]; then
  # The wheel, built here: building on 3.9 needs tomli for hatchling, which pip gets from PyPI
  # but these local indexes lack. What runs on 3.9 is the wheel's code either way.
  step "the wheel on $("$PY39" --version) (requires-python >= 3.9)"
  wheel_on_39() {
    "$VENV/bin/python" -m pip wheel -q --no-deps "${PIP_SOURCES[@]}" -w "$WORK/dist" "$ROOT/trainer/python" 2> >(grep -v 'is ignored' >&2) || return 1
    install_into "$PY39" venv39 "$(ls "$WORK"/dist/predictions_callback-*.whl)"
  }
  check "the wheel installs and predictions-sync --help runs on Python 3.9" wheel_on_39
else
  step "Python 3.9: not on this machine; the 3.9 floor is checked by ruff's target-version only"
fi

# --- lint and types ------------------------------------------------------------------------------------
step "ruff and mypy on predictions_callback.py and examples/"
cd "$HERE"
check "ruff check" "$TOOLS/bin/ruff" check --config pyproject.toml predictions_callback.py examples
check "ruff format --check examples" "$TOOLS/bin/ruff" format --config pyproject.toml --check examples
check "mypy" "$TOOLS/bin/mypy" --config-file pyproject.toml --no-incremental predictions_callback.py examples/finetune.py

step "package checks"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "package checks: ${#FAILED[@]} failed:" >&2
  printf '  %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "package checks: all passed"
