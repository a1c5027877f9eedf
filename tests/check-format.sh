#!/usr/bin/env bash
# Fails when a tracked C++ file differs from what clang-format makes of it (.clang-format at
# the root; the emulator's folders inherit it with their own indent). Fix with:
#   git ls-files '*.cpp' '*.hpp' | xargs clang-format-14 -i
set -euo pipefail
cd "$(dirname "$0")/.."
fmt=$(command -v clang-format-14 || command -v clang-format || true)
if [[ -z $fmt ]]; then
  echo "check-format: clang-format-14 not found (deploy/install-deps.sh --with-test-tools installs it)" >&2
  exit 1
fi
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.cc')
if ! "$fmt" --dry-run -Werror "${files[@]}"; then
  echo "check-format: the files above are not formatted (see the fix in tests/check-format.sh)" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted"
