#!/usr/bin/env bash
# Run a command inside a fresh loopback-only network namespace, then remove the namespace.
# Browser media tests run here so that no media can leave the machine (../shared/TESTING.md).
set -euo pipefail
NS="onedoor-e2e-$$"
ip netns add "$NS"
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
ip netns exec "$NS" ip link set lo up
set +e
ip netns exec "$NS" env ONEDOOR_E2E_NETNS="$NS" "$@"
rc=$?
set -e
# pytest's exit code 5 means no test was collected for this selection.
if [ "$rc" -eq 5 ]; then rc=0; fi
exit "$rc"
