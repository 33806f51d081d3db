#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a demo server built from this tree: `countersign demo`
# on a loopback port with a fresh database, a demo person's API token (the admin's by default), the checks
# `not_a_server_error` and `response_schema_conformance` over every operation of
# /api/v1/openapi.json. Exits non-zero on any finding.
#
#   scripts/schemathesis.sh                 # 100 examples per operation (about a minute)
#   ST_MAX_EXAMPLES=300 scripts/schemathesis.sh
#   ST_USER=ana@app-owners.example ST_CHANGE=CHG-2 scripts/schemathesis.sh   # as a requester, on her draft
#
# schemathesis is installed into target/schemathesis-venv on first use (pip).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES=${ST_MAX_EXAMPLES:-100}
PORT=${ST_PORT:-18765}
VENV=target/schemathesis-venv
ST_VERSION=${ST_VERSION:-4.32.5}

# A venv records its absolute path (a target directory moved elsewhere breaks it):
# make it again unless its schemathesis runs.
if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
  echo "== installing schemathesis $ST_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION"
fi

if [[ -z "${COUNTERSIGN_BIN:-}" ]]; then
  cargo build -q --bin countersign
  COUNTERSIGN_BIN=target/debug/countersign
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== countersign demo on 127.0.0.1:$PORT (database and mails in $WORK)"
COUNTERSIGN_MAIL_DIR="$WORK/mail" "$COUNTERSIGN_BIN" demo --bind "127.0.0.1:$PORT" --db "$WORK/demo.db" \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
TOKEN=
for _ in $(seq 1 120); do
  TOKEN=$(awk -v who="${ST_USER:-admin@countersign.example}" '$1 == who {print $NF}' "$WORK/server.log")
  if [[ -n "$TOKEN" ]] && curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORK/server.log"; exit 1; fi
  sleep 0.5
done
[[ -n "$TOKEN" ]] || { echo "no token for ${ST_USER:-admin@countersign.example} in the demo's output" >&2; cat "$WORK/server.log"; exit 1; }

# Path parameters that name things the demo has, so the requests reach the handlers'
# logic rather than a 404: a change, an entity, a freeze, a proposal, a mail.
ENTITY=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/inventory?limit=1" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["entities"][0]["id"])')
cat >"$WORK/schemathesis.toml" <<TOML
[[operations]]
include-path-regex = "^/api/v1/changes/[{]id[}]"
parameters = { "path.id" = "${ST_CHANGE:-CHG-6}", "path.nid" = 1 }

[[operations]]
include-path-regex = "^/api/v1/inventory/[{]id[}]"
parameters = { "path.id" = "$ENTITY" }

[[operations]]
include-path-regex = "^/api/v1/(calendar|outbox)/"
parameters = { "path.id" = 1 }

[[operations]]
include-path-regex = "^/api/v1/teams/"
parameters = { "path.team" = "platform-ops", "path.id" = 1 }
TOML

echo "== schemathesis: $MAX_EXAMPLES examples per operation"
start=$(date +%s)
status=0
PYTHONPATH=scripts SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  --url "http://127.0.0.1:$PORT" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --generation-deterministic \
  --request-timeout 30 \
  --report-dir "$WORK/report" || status=$?
echo "== schemathesis took $(( $(date +%s) - start )) s"
if [[ $status -ne 0 ]]; then
  echo "== server errors logged:"
  grep -E '"status":5|status=5|ERROR' "$WORK/server.log" | tail -40 || true
fi
exit $status
