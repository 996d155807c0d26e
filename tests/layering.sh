#!/usr/bin/env bash
# Checks the dependency rules of DESIGN.md: which layer may include which.
#   isa, arch, workloads: nothing of ours; compiler: arch, isa; sim: arch, isa, workloads (never
#   compiler).
set -u
root=${1:-.}
cd "$root" || exit 2
fail=0
check() {  # check LAYER ALLOWED...
  local layer=$1; shift
  [ -d "$layer" ] || return 0
  local allowed="$layer $*"
  while IFS= read -r line; do
    local file=${line%%:*}
    local inc
    inc=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$line")
    case " $allowed " in
      *" $inc "*) ;;
      *) echo "layering: $file includes $inc/ ($layer may use: $allowed)"; fail=1 ;;
    esac
  done < <(grep -rnE '#include "(arch|isa|compiler|sim|workloads|tools|tests)/' "$layer" --include='*.hpp' --include='*.cpp' --include='*.def' || true)
}
check isa
check arch
check compiler arch isa
check sim arch isa workloads
check workloads
[ $fail -eq 0 ] && echo "layering: ok"
exit $fail
