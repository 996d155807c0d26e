#!/usr/bin/env bash
# Builds and runs every test: the Release build (warnings are errors) and the ASan+UBSan build
# (without the tests labelled slow).
# Expects the dependencies of tools/install-deps.sh. Used by .ci/run and the README.
set -euo pipefail
cd "$(dirname "$0")/.."
for preset in ci-release ci-asan; do
  echo "== $preset: configure and build"
  cmake --preset "$preset" > /dev/null
  cmake --build --preset "$preset"
  echo "== $preset: tests"
  # Heavy end-to-end tests (label slow) run in the Release build only.
  if [ "$preset" = ci-release ]; then
    ctest --preset "$preset" --timeout 900
  else
    ctest --preset "$preset" --timeout 900 -LE slow
  fi
done
