#!/usr/bin/env bash
# The monitoring examples of packaging/ (issue 16) against the real binary:
# - packaging/prometheus/portcullis.yml passes `promtool check config` (a copy whose
#   credentials_file names a file that exists; the rules file it names is checked with it) and
#   packaging/prometheus/portcullis-rules.yml passes `promtool check rules`;
# - packaging/grafana/portcullis.json is valid JSON with the variables datasource (type
#   datasource, prometheus) and instance (label_values(portcullis_build_info, instance)), every
#   panel has a unique id and a gridPos inside the 24 columns that overlaps no other, every
#   datasource is ${datasource} (no absolute uid), every variable used is defined, and every
#   PromQL expression parses (`promtool check rules` on them, the variables replaced);
# - every metric name the dashboard and the rules use (histograms' _bucket/_sum/_count as their
#   family) is a family (`# TYPE name`) of a real scrape of a server with a route, a push sink
#   and TLS, after a few requests; and every family of that scrape is on the dashboard.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/integration/lib.sh
source "$here/lib.sh"
need python3 sha256sum
need_tls_tools
command -v promtool >/dev/null 2>&1 ||
    skip "promtool is not installed (Debian package prometheus: scripts/deps --test)"

SOURCE_ROOT=${PORTCULLIS_SOURCE_ROOT:-$here/../..}
DASHBOARD="$SOURCE_ROOT/packaging/grafana/portcullis.json"
SCRAPE_EXAMPLE="$SOURCE_ROOT/packaging/prometheus/portcullis.yml"
RULES="$SOURCE_ROOT/packaging/prometheus/portcullis-rules.yml"
for f in "$DASHBOARD" "$SCRAPE_EXAMPLE" "$RULES"; do
    [[ -s $f ]] || fail "$f is missing or empty"
done

# --- the Prometheus examples -----------------------------------------------------------------
# promtool wants the credentials_file to exist: a copy of the example names one in WORKDIR, with
# the rules file next to it (rule_files is relative to the configuration's folder).
prom="$WORKDIR/prometheus"
mkdir -p "$prom"
printf 'pct_not_a_real_token\n' >"$prom/portcullis.token"
sed "s|^\( *credentials_file:\).*|\1 $prom/portcullis.token|" "$SCRAPE_EXAMPLE" >"$prom/portcullis.yml"
grep -qF "credentials_file: $prom/portcullis.token" "$prom/portcullis.yml" ||
    fail "$SCRAPE_EXAMPLE has no credentials_file line to point at a test file"
cp "$RULES" "$prom/portcullis-rules.yml"
promtool check config "$prom/portcullis.yml" >"$prom/config.out" 2>&1 ||
    fail "promtool check config $SCRAPE_EXAMPLE: $(cat "$prom/config.out")"
# The configuration's check also checks the rule files it names: they must have been found.
grep -qF "portcullis-rules.yml" "$prom/config.out" ||
    fail "promtool check config did not check the rules file: $(cat "$prom/config.out")"
promtool check rules "$RULES" >"$prom/rules.out" 2>&1 ||
    fail "promtool check rules $RULES: $(cat "$prom/rules.out")"
python3 - "$SCRAPE_EXAMPLE" <<'PY' || fail "$SCRAPE_EXAMPLE: the portcullis job"
import re, sys
text = open(sys.argv[1]).read()
for want in (r"job_name: portcullis\b", r"metrics_path: /metrics\b", r"type: Bearer\b",
             r"credentials_file: \S+", r"- portcullis-rules\.yml\b"):
    if not re.search(want, text):
        sys.exit(f"no line matching {want!r}")
PY

# --- the dashboard -----------------------------------------------------------------------------
# Writes the names the dashboard uses to dashboard.names and its expressions, as recording rules,
# to dashboard-exprs.yml; fails on a structural error.
python3 - "$DASHBOARD" "$WORKDIR" <<'PY' || fail "$DASHBOARD: see above"
import json, re, sys

path, work = sys.argv[1], sys.argv[2]
errors = []
try:
    d = json.load(open(path, encoding="utf-8"))
except ValueError as e:
    sys.exit(f"FAIL: {path} is not valid JSON: {e}")

if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
    errors.append(f"schemaVersion {d.get('schemaVersion')!r}: expected an integer >= 36")
variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
ds = variables.get("datasource", {})
if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    errors.append("no variable 'datasource' of type datasource, query prometheus")

def var_query(v):
    q = v.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")

if var_query(variables.get("instance", {})) != "label_values(portcullis_build_info, instance)":
    errors.append("variable 'instance' is not label_values(portcullis_build_info, instance)")

# Every panel, those inside collapsed rows too.
panels = []
for p in d.get("panels", []):
    panels.append(p)
    panels.extend(p.get("panels", []))
ids = {}
cells = {}
for p in panels:
    title = p.get("title", "?")
    pid = p.get("id")
    if not isinstance(pid, int):
        errors.append(f"panel {title!r}: id {pid!r} is not an integer")
    elif pid in ids:
        errors.append(f"panel {title!r}: id {pid} is also {ids[pid]!r}'s")
    else:
        ids[pid] = title
    g = p.get("gridPos", {})
    x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
    if not all(isinstance(v, int) for v in (x, y, w, h)) or x < 0 or w < 1 or h < 1 or x + w > 24:
        errors.append(f"panel {title!r}: gridPos {g} is not inside the 24 columns")
        continue
    for cx in range(x, x + w):
        for cy in range(y, y + h):
            if (cx, cy) in cells:
                errors.append(f"panel {title!r} overlaps {cells[cx, cy]!r} at x={cx} y={cy}")
                break
            cells[cx, cy] = title
        else:
            continue
        break

# Datasources: the variable only, never an absolute uid (the built-in annotation excepted).
def walk(node, where):
    if isinstance(node, dict):
        if "datasource" in node and isinstance(node["datasource"], dict):
            got = node["datasource"]
            if got.get("type") != "grafana" and got != {"type": "prometheus", "uid": "${datasource}"}:
                errors.append(f"{where}: datasource {got} is not the ${{datasource}} variable")
        for k, v in node.items():
            walk(v, where)
    elif isinstance(node, list):
        for v in node:
            walk(v, where)

for p in panels:
    walk({k: v for k, v in p.items() if k != "panels"}, f"panel {p.get('title')!r}")
walk(d.get("templating", {}), "templating")

# The expressions: each target's expr, and the series selectors of the query variables.
exprs = []  # (where, expr)
for p in panels:
    if p.get("type") == "row":
        continue
    targets = p.get("targets", [])
    if not targets:
        errors.append(f"panel {p.get('title')!r} has no query")
    for t in targets:
        if not t.get("expr"):
            errors.append(f"panel {p.get('title')!r}, query {t.get('refId')}: no expr")
        else:
            exprs.append((f"panel {p.get('title')!r}", t["expr"]))
for name, v in variables.items():
    if v.get("type") != "query":
        continue
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var_query(v))
    if not m:
        errors.append(f"variable {name!r}: query {var_query(v)!r} is not label_values(SELECTOR, LABEL)")
    else:
        exprs.append((f"variable {name!r}", m.group(1)))

builtin = {"__rate_interval", "__interval", "__range"}
rules = []
names = set()
for i, (where, e) in enumerate(exprs):
    for used in re.findall(r"\$\{?(\w+)\}?", e):
        if used not in variables and used not in builtin:
            errors.append(f"{where}: ${used} is not a variable of the dashboard")
    promql = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", e)
    promql = re.sub(r"\$\{?\w+\}?", ".*", promql)
    rules.append((f"dashboard_expr_{i}", promql, where))
    for n in re.findall(r"\bportcullis_[a-z_]+", e):
        names.add((n, where))

with open(f"{work}/dashboard-exprs.yml", "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for record, promql, where in rules:
        f.write(f"      # {where}\n      - record: {record}\n        expr: {json.dumps(promql)}\n")
with open(f"{work}/dashboard.names", "w") as f:
    for n, where in sorted(names):
        f.write(f"{n}\t{where}\n")
for e in errors:
    print(f"FAIL: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
if ! promtool check rules "$WORKDIR/dashboard-exprs.yml" >"$WORKDIR/dashboard-exprs.out" 2>&1; then
    # The rules are named dashboard_expr_N: say which panels they come from.
    where=$(grep -o 'dashboard_expr_[0-9]*' "$WORKDIR/dashboard-exprs.out" | sort -u |
        while read -r record; do grep -F -B1 "record: $record" "$WORKDIR/dashboard-exprs.yml" | head -n 1; done)
    fail "a dashboard expression is not PromQL (the variables replaced): $(cat "$WORKDIR/dashboard-exprs.out") from:$where"
fi

# The names the rules use, with the alert that uses them (the whole file but its comments: a
# name in an annotation must exist too).
python3 - "$RULES" >"$WORKDIR/rules.names" <<'PY' || fail "$RULES: names"
import re, sys
alert = "(top)"
for line in open(sys.argv[1], encoding="utf-8"):
    if line.lstrip().startswith("#"):
        continue
    m = re.match(r"\s*- alert: (\S+)", line)
    if m:
        alert = m.group(1)
    for n in re.findall(r"\bportcullis_[a-z_]+", line):
        print(f"{n}\talert {alert}")
PY
[[ -s $WORKDIR/rules.names ]] || fail "$RULES uses no portcullis_ metric"

# --- a real scrape ------------------------------------------------------------------------------
new_token() { "$PORTCULLIS" token new | sed -n 's/^token: *//p'; }
SCRAPER=$(new_token)
[[ $SCRAPER == pct_* ]] || fail "portcullis token new printed no token"
export GH_SECRET="dashboard-secret-$RANDOM"
tls_make_ca
tls_make_cert hooks "DNS:hooks.test"
# A push sink whose application is not there (a port the kernel gave and took back): its
# attempts fail and retry, which is all the sink families need.
SINK_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
    cat <<EOF
server:
  listen: ["127.0.0.1:0"]
  shards: 2
EOF
    tls_yaml hooks
    cat <<EOF
admin: {listen: "127.0.0.1:0"}
spool: {dir: $WORKDIR/spool, durability: fsync}
sinks:
  app: {http: {url: "http://127.0.0.1:$SINK_PORT/hooks"}}
routes:
  github: {path: /webhooks/github, verify: {scheme: github, secrets: [{env: GH_SECRET}]}}
  pushed: {path: /webhooks/pushed, verify: {scheme: none}, deliver: [app]}
tokens:
  prometheus: {sha256: "$(printf %s "$SCRAPER" | sha256sum | cut -d' ' -f1)", scopes: ["metrics:read"]}
EOF
} >"$WORKDIR/config.yaml"
start_server "$WORKDIR/config.yaml"
[[ -n $ADMIN_PORT ]] || fail "no control-plane listening line"
[[ -n $TLS_PORT ]] || fail "no TLS listening line"

body='{"zen":"Keep it logically awesome."}'
printf %s "$body" >"$WORKDIR/body.json"
sig=$(hmac_sha256_hex "$GH_SECRET" "$body")
post /webhooks/github "$WORKDIR/body.json" -H "X-Hub-Signature-256: sha256=$sig"
expect_queued "signed webhook"
post /webhooks/github "$WORKDIR/body.json"
expect_unauthorized "unsigned webhook"
tls_post hooks.test /webhooks/github "$WORKDIR/body.json" -H "X-Hub-Signature-256: sha256=$sig"
expect_queued "signed webhook over TLS"
post /webhooks/pushed "$WORKDIR/body.json"
expect_queued "webhook for the sink"

status=$(curl -sS -m 20 -o "$WORKDIR/scrape" -w '%{http_code}' \
    -H "Authorization: Bearer $SCRAPER" "http://127.0.0.1:$ADMIN_PORT/metrics") ||
    fail "GET /metrics failed"
expect_eq "GET /metrics" 200 "$status"

python3 - "$WORKDIR/scrape" "$WORKDIR/dashboard.names" "$WORKDIR/rules.names" <<'PY' ||
import sys
scrape, dashboard, rules = sys.argv[1:]
families = {}
for line in open(scrape, encoding="utf-8"):
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        families[name] = kind

def family(name):
    """The scrape's family NAME stands for, or None."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and families.get(base) == "histogram":
            return base
    return None

missing = {}
on_dashboard = set()
for source in (dashboard, rules):
    for line in open(source, encoding="utf-8"):
        name, where = line.rstrip("\n").split("\t")
        f = family(name)
        if f is None:
            missing.setdefault(name, []).append(where)
        elif source == dashboard:
            on_dashboard.add(f)
for name, where in sorted(missing.items()):
    print(f"FAIL: {name} is used but not in the scrape (no '# TYPE {name}'): {'; '.join(sorted(set(where)))}",
          file=sys.stderr)
absent = sorted(set(families) - on_dashboard)
for name in absent:
    print(f"FAIL: the scrape's family {name} is on no panel of the dashboard", file=sys.stderr)
print(f"{len(on_dashboard)} families on the dashboard, {len(families)} in the scrape")
sys.exit(1 if missing or absent else 0)
PY
    fail "the dashboard and the rules against the scrape (names above)"

stop_server
echo "PASS: dashboard"
