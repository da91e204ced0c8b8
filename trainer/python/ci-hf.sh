#!/usr/bin/env bash
# The real-Trainer suite (issue 14): the Python callback inside a real transformers Trainer,
# against the real server. Usage: trainer/python/ci-hf.sh VERSION [pytest args...]
#
# Creates (or reuses) a virtual environment for transformers VERSION from this machine's local
# package indexes only (the public index is unreachable and pip would retry it for minutes),
# cached outside the repository and keyed by everything that decides its contents, then runs
# trainer/python/tests with that environment's pytest. Extra arguments go to pytest (a test file
# or node id given there replaces the default of the whole suite). The suite starts its own server
# (node, embedded database): run it from a checkout with node_modules installed.
#
# Exit codes: 0 suite green; 1 tests failed (or errored); 2 usage; 3 this transformers version
# cannot be installed from the local indexes (nothing was run: the version is blocked, not
# failing); 4 the environment could not be built for another reason; 5 no tests were collected
# (a failure, never a pass).
set -euo pipefail

if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: $0 TRANSFORMERS_VERSION [pytest args...]   e.g. $0 5.18.0" >&2
  exit 2
fi
VERSION=$1
shift
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

# torch 2.13.0+cpu exists here only as a cp311 wheel, so the interpreter is not a free choice.
PYTHON=${PYTHON:-python3.11}
TORCH=torch==2.13.0+cpu
ACCELERATE=accelerate==1.15.0
# Installed when they resolve against this transformers version; the suite's PEFT and TRL tests
# are skipped (by name, with the reason) only when this script could not install them.
EXTRAS=(peft==0.21.0 trl==1.13.0)
# This machine's package indexes. Never the public one: it is unreachable, and pip retries it for minutes.
INDEX_URL=file:///opt/pypi/simple
EXTRA_INDEX_URL=file:///opt/pypi-more/simple
FIND_LINKS=/opt/wheels
PIP_SOURCES=(--index-url "$INDEX_URL" --extra-index-url "$EXTRA_INDEX_URL" --find-links "$FIND_LINKS")
# A fully pinned list (pip freeze of a good build, HF_WRITE_LOCK=1 writes it); when present it
# constrains every build and is part of the cache key, so a newer wheel in an index changes nothing.
LOCK="$HERE/requirements-hf-$VERSION.txt"

step() { printf '\n== %s\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "$PYTHON not found (torch 2.13.0+cpu is a cp311 wheel here); set PYTHON to a Python 3.11 interpreter" >&2
  exit 4
fi

REQUIREMENTS=$(printf '%s\n' "transformers==$VERSION" "$TORCH" "$ACCELERATE" tokenizers pytest)
KEY_TEXT=$(
  printf 'layout 2\n'
  "$PYTHON" -c 'import sys; print(sys.version)'
  printf '%s\n' "$REQUIREMENTS" "${EXTRAS[@]}" "${PIP_SOURCES[@]}"
  if [ -f "$LOCK" ]; then cat "$LOCK"; fi
)
HASH=$(printf '%s' "$KEY_TEXT" | sha256sum | cut -c1-12)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/predictions-monolith
VENV=$CACHE/hf-venv-$VERSION-$HASH
mkdir -p "$CACHE"

build_venv() {
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
  local constraints=()
  if [ -f "$LOCK" ]; then constraints=(-c "$LOCK"); fi
  local log
  log=$(mktemp)
  : >"$VENV/.without"
  # One resolution with the extras; without them only if they are what cannot be resolved.
  # shellcheck disable=SC2086
  if ! "${pip[@]}" install "${PIP_SOURCES[@]}" "${constraints[@]}" $REQUIREMENTS "${EXTRAS[@]}" >"$log" 2>&1; then
    local extras_log
    extras_log=$(mktemp)
    cp "$log" "$extras_log"
    # shellcheck disable=SC2086
    if ! "${pip[@]}" install "${PIP_SOURCES[@]}" "${constraints[@]}" $REQUIREMENTS >"$log" 2>&1; then
      if grep -qE 'ResolutionImpossible|conflicting dependencies|No matching distribution|Could not find a version' "$log"; then
        {
          echo "transformers $VERSION cannot be installed from this machine's package indexes:"
          grep -E 'requires|depends on|conflict|Could not find|No matching' "$log" | sed 's/^/  pip: /' | head -20
          echo "Not relaxing the pin (editing installed metadata would test an environment nobody can install)."
          echo "Indexes: ${PIP_SOURCES[*]}"
          echo "transformers $VERSION is BLOCKED here, not failing: exit 3, no test was run."
        } >&2
        rm -rf "$VENV" "$log" "$extras_log"
        exit 3
      fi
      cat "$log" >&2
      rm -rf "$VENV" "$log" "$extras_log"
      echo "could not build the environment for transformers $VERSION (see pip's output above)" >&2
      exit 4
    fi
    echo "peft/trl do not install with transformers $VERSION here; the suite skips their tests by name:" >&2
    grep -E 'requires|depends on|conflict|Could not find|No matching' "$extras_log" | sed 's/^/  pip: /' | head -10 >&2
    echo "peft trl" >"$VENV/.without"
    rm -f "$extras_log"
  fi
  rm -f "$log"
  "${pip[@]}" freeze >"$VENV/.freeze"
  if [ ! -f "$LOCK" ]; then
    if [ "${HF_WRITE_LOCK:-0}" = 1 ]; then
      {
        echo "# What trainer/python/ci-hf.sh $VERSION installs (pip freeze), used as constraints by every build."
        echo "# Regenerate: delete this file, then HF_WRITE_LOCK=1 trainer/python/ci-hf.sh $VERSION"
        cat "$VENV/.freeze"
      } >"$LOCK"
      echo "wrote $LOCK"
    else
      echo "no $LOCK: resolved from the indexes as they are today (HF_WRITE_LOCK=1 writes one from this build)"
    fi
  fi
  # Written last: an interrupted build is never mistaken for a finished one.
  printf '%s\n' "$KEY_TEXT" >"$VENV/.complete"
}

step "environment for transformers $VERSION"
started=$SECONDS
# Two CI runs on one machine build one environment, not two half-environments.
exec 9>"$CACHE/.hf-venv-$VERSION.lock"
flock 9
if [ -f "$VENV/.complete" ] && [ -x "$VENV/bin/python" ]; then
  echo "reusing $VENV"
else
  echo "building $VENV"
  build_venv
  echo "built in $((SECONDS - started)) s"
fi
flock -u 9
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
names = ("transformers", "torch", "accelerate", "tokenizers", "huggingface-hub", "peft", "trl", "pytest")
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return "-"
print(" ".join(f"{name}={version(name)}" for name in names))
EOF

step "real-Trainer suite (transformers $VERSION)"
# The whole suite unless the arguments name test files or node ids themselves.
targets=("$HERE/tests")
for arg in "$@"; do
  if [[ "$arg" != -* ]] && [ -e "${arg%%::*}" ]; then targets=(); break; fi
done
set +e
(
  cd "$ROOT"
  PREDICTIONS_HF_WITHOUT=$(cat "$VENV/.without") \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_INDEX_URL=$INDEX_URL PIP_EXTRA_INDEX_URL=$EXTRA_INDEX_URL PIP_FIND_LINKS=$FIND_LINKS \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    PATH="$VENV/bin:$PATH" \
    "$VENV/bin/python" -m pytest "${targets[@]}" -p no:cacheprovider -ra "$@"
)
status=$?
set -e
case $status in
  0) echo "real-Trainer suite: green (transformers $VERSION)" ;;
  5) echo "real-Trainer suite: NO TESTS COLLECTED (transformers $VERSION): treated as a failure" >&2 ;;
  *) echo "real-Trainer suite: FAILED with pytest exit code $status (transformers $VERSION)" >&2 ;;
esac
if [ $status -eq 0 ] || [ $status -eq 5 ]; then exit $status; fi
exit 1
