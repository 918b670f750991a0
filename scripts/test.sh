#!/usr/bin/env bash
# Set up and run the whole test suite (slow end-to-end tests included). Extra args go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
PYTHON=${PYTHON:-python3}
# Two workers (pytest-xdist, in the dev extra) by default: CI machines have 2 cores.
"$PYTHON" -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" "$@"
status=$?
# pytest exits 5 when no test was collected; that is a failure for us, not a pass.
if [ "$status" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$status"
