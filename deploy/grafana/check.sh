#!/usr/bin/env bash
# Checks a Grafana dashboard JSON against Grafana's own dashboard schema: the TypeScript types that
# Grafana publishes as @grafana/schema (the "Dashboard" model its frontend loads), with the TypeScript
# compiler. The dashboard is embedded as an object literal, so that unknown keys are errors too.
# Usage: deploy/grafana/check.sh [dashboard.json ...]   (default: every deploy/grafana/*.json)
# Needs `npm ci` in deploy/grafana/schema-check (scripts/test.sh does it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/schema-check"
if [ ! -x "$tools/node_modules/.bin/tsc" ] || [ ! -d "$tools/node_modules/@grafana/schema" ]; then
  echo "deploy/grafana/check.sh: the schema checker is not installed; run scripts/test.sh (or: npm ci --prefix deploy/grafana/schema-check)" >&2
  exit 2
fi
[ $# -gt 0 ] || set -- "$here"/*.json
status=0
for f in "$@"; do
  work="$(mktemp -d "$tools/.check.XXXXXX")"
  {
    echo 'import type { Dashboard } from "@grafana/schema";'
    printf 'export const dashboard: Dashboard = '
    cat "$f"
    echo ';'
  } > "$work/dashboard.ts"
  if (cd "$tools" && node_modules/.bin/tsc --noEmit --strict --target es2020 --moduleResolution node "$work/dashboard.ts"); then
    echo "ok: $f"
  else
    echo "not a valid Grafana dashboard: $f" >&2
    status=1
  fi
  rm -rf "$work"
done
exit "$status"
