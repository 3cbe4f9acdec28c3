#!/usr/bin/env bash
# Apply a .sql file to ClickHouse over its HTTP interface, one statement per POST.
#
#   tools/clickhouse/apply-schema.sh URL FILE
#   e.g. tools/clickhouse/apply-schema.sh http://127.0.0.1:8123/ tools/schema/cvat-events-18.16.sql
#
# Statements end with `;` at the end of a line (trailing blanks allowed); a last statement
# without `;` is applied too. Lines that are only a `--` comment, and blank lines, are
# dropped; nothing else is parsed, so keep `;` out of the end of lines inside a statement.
# Idempotence comes from the file's statements (CREATE ... IF NOT EXISTS): the script
# itself just applies them in order and stops at the first failure.
#
# Environment: CLICKHOUSE_USER / CLICKHOUSE_PASSWORD for HTTP basic auth (not on the
# command line: curl reads them from a pipe); CLICKHOUSE_TIMEOUT (s per statement, default 30).
# Exit codes: 0 all applied, 1 a statement failed or the server could not be reached
# (ClickHouse's error text on stderr), 2 usage.
set -uo pipefail

say() { printf 'apply-schema: %s\n' "$*" >&2; }

[[ $# -eq 2 ]] || { echo "usage: $0 URL FILE" >&2; exit 2; }
url=$1
file=$2
[[ -r $file ]] || { say "cannot read $file"; exit 2; }
command -v curl >/dev/null 2>&1 || { say "curl is needed"; exit 1; }
timeout=${CLICKHOUSE_TIMEOUT:-30}

body=$(mktemp) || exit 1
trap 'rm -f "$body"' EXIT

# curl's config for the credentials, so they do not show in the process list.
curl_auth_config() {
  local u=${CLICKHOUSE_USER:-} p=${CLICKHOUSE_PASSWORD:-}
  [[ -n $u || -n $p ]] || return 0
  [[ -n $u ]] || u=default
  u=${u//\\/\\\\}; u=${u//\"/\\\"}
  p=${p//\\/\\\\}; p=${p//\"/\\\"}
  printf 'user = "%s:%s"\n' "$u" "$p"
}

count=0
post() {
  local stmt=$1 code rc first
  count=$((count + 1))
  first=${stmt%%$'\n'*}
  code=$(printf '%s' "$stmt" | curl -sS -K <(curl_auth_config) --max-time "$timeout" \
    -o "$body" -w '%{http_code}' --data-binary @- "$url" 2>"$body.err")
  rc=$?
  if [[ $rc -ne 0 ]]; then
    say "statement $count ($first): curl failed (exit $rc): $(cat "$body.err")"
    rm -f "$body.err"
    exit 1
  fi
  rm -f "$body.err"
  if [[ $code != 200 ]]; then
    say "statement $count ($first) failed: HTTP $code"
    cat "$body" >&2
    [[ -n $(tail -c1 "$body") ]] && echo >&2
    exit 1
  fi
  say "ok: $first"
}

stmt=""
while IFS= read -r line || [[ -n $line ]]; do
  line=${line%$'\r'}
  [[ $line =~ ^[[:space:]]*(--.*)?$ ]] && continue
  stmt+="$line"$'\n'
  trimmed=${line%"${line##*[![:space:]]}"}
  if [[ $trimmed == *";" ]]; then
    stmt=${stmt%"${stmt##*[![:space:]]}"}   # trailing blanks and newline
    stmt=${stmt%;}
    [[ -n ${stmt//[[:space:];]/} ]] && post "$stmt"
    stmt=""
  fi
done <"$file"
if [[ -n ${stmt//[[:space:];]/} ]]; then
  post "$stmt"
fi

[[ $count -gt 0 ]] || { say "no statement in $file"; exit 1; }
say "applied $count statement(s) from $file"
