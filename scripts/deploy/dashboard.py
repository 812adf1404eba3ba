#!/usr/bin/env python3
"""The Grafana dashboard's queries, for the deploy checks.

    dashboard.py rules DASHBOARD.json
        every panel query as a Prometheus recording rule (for `promtool check rules`, which
        parses each one), with Grafana's variables replaced as a viewer's defaults would.
    dashboard.py names DASHBOARD.json RULES.yaml -- SOURCE_DIR...
        every metric the dashboard and the alerts use must be one the services define (a
        `"framewire_…"` string in the sources); prints which panel/alert uses what.
    dashboard.py cluster DASHBOARD.json TEST.yaml
        the cluster-only queries: those reading a Kubernetes series (cAdvisor,
        kube-state-metrics) named in deploy/prometheus/cluster-series.yaml, which the local
        run cannot have. Every metric a query reads must be a Framewire one, `up` or one of
        those; a cluster-only query may name only labels those series carry and may not mix
        in Framewire metrics. Writes TEST.yaml: a promtool unit test that each of them
        returns data from those series (run it with `promtool test rules TEST.yaml`).
    dashboard.py query DASHBOARD.json PROMETHEUS_URL NAMESPACE [--wait SECONDS]
        runs every query but the cluster-only ones (and the variables' label_values lookups)
        against a live Prometheus; retries until each returns data or the time is up; prints
        one line per query with the number of series; exits 1 if any stayed empty.
"""
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

CLUSTER_SERIES = Path(__file__).resolve().parents[2] / "deploy/prometheus/cluster-series.yaml"
GRAFANA = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "1h"}  # the default 1 h range
# What a viewer of release "framewire" in namespace "framewire" sees (all cameras).
VIEWER = {"namespace": "framewire", "release": "framewire", "camera": ".*"}

TOKEN = re.compile(r"""
    (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<sel>\{(?:"(?:\\.|[^"\\])*"|[^}"])*\})
  | (?P<range>\[[^\]]*\])
  | (?P<num>\d[\w.]*)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<space>\s+)
  | (?P<other>.)""", re.X | re.S)
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
MATCHER = re.compile(r"""([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')""")


def parse(expr):
    """The metrics a PromQL expression reads ({name: labels its selectors name}) and the
    labels its by/without/on/ignoring/group_* clauses name. Lexical, enough for dashboards."""
    toks = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr) if m.lastgroup != "space"]
    metrics, grouping = {}, set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if kind == "ident" and text.lower() in GROUPING:
            if nxt[1] == "(":
                j = i + 2
                while j < len(toks) and toks[j][1] != ")":
                    if toks[j][0] == "ident":
                        grouping.add(toks[j][1])
                    j += 1
                i = j
        elif kind == "ident" and text.lower() not in KEYWORDS and nxt[1] != "(" and nxt[1] not in ("by", "without"):
            labels = metrics.setdefault(text, set())
            if nxt[0] == "sel":
                labels.update(MATCHER.findall(nxt[1]))
                i += 1
        i += 1
    return metrics, grouping


def panels(dash):
    """Every panel, those inside collapsed rows too."""
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def queries(path):
    dash = json.load(open(path))
    out = []
    for p in panels(dash):
        for t in p.get("targets", []):
            out.append((p["id"], p["title"], t["refId"], t["expr"]))
    variables = [v for v in dash["templating"]["list"] if v["type"] == "query"]
    return out, variables


def substitute(expr, values):
    for k, v in GRAFANA.items():
        expr = expr.replace(k, v)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("$" + name, values[name])
    return expr


def base_name(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_ours(name):
    return name == "up" or name.startswith("framewire_")


def cmd_rules(path):
    qs, _ = queries(path)
    print("groups:\n  - name: dashboard\n    rules:")
    for pid, title, ref, expr in qs:
        print(f"      - record: dashboard:panel{pid}_{ref.lower()}")
        print(f"        expr: {json.dumps(substitute(expr, VIEWER))}")


def cmd_names(path, rules, dirs):
    out = subprocess.run(["grep", "-rhoE", '"framewire_[a-z0-9_]+"', *dirs], capture_output=True, text=True).stdout
    defined = {s.strip('"') for s in out.split()}
    uses = {}

    def use(expr, where):
        for m in parse(expr)[0]:
            if is_ours(m):
                uses.setdefault(base_name(m), set()).add(where)

    qs, variables = queries(path)
    for pid, title, ref, expr in qs:
        use(expr, f"panel '{title}'")
    for v in variables:
        use(v["query"]["query"], f"variable ${v['name']}")
    for g in yaml.safe_load(open(rules))["groups"]:
        for r in g["rules"]:
            use(r["expr"], f"alert {r.get('alert') or r.get('record')}")
    unknown = []
    for name in sorted(uses):
        known = name == "up" or name in defined
        where = ", ".join(sorted(uses[name]))
        print(f"    {'ok ' if known else 'MISSING'} {name:48s} {where[:110]}")
        if not known:
            unknown.append(name)
    if unknown:
        sys.exit(f"metrics used by the dashboard/alerts that no service defines: {', '.join(unknown)}")


def cluster_series():
    """The fixture's series and {metric: labels its series carry}."""
    fixture = yaml.safe_load(open(CLUSTER_SERIES))
    labels = {}
    for s in fixture["series"]:
        name, sel = re.fullmatch(r"(\w+)(\{.*\})", s["series"]).groups()
        labels.setdefault(name, set()).update(MATCHER.findall(sel))
    return fixture, labels


def cluster_only(expr, known):
    return any(m in known for m in parse(expr)[0])


def cmd_cluster(path, out):
    fixture, known = cluster_series()
    qs, _ = queries(path)
    problems, tests = [], []
    for pid, title, ref, expr in qs:
        metrics, grouping = parse(expr)
        where = f"panel '{title}' {ref}"
        for m in metrics:
            if not is_ours(m) and m not in known:
                problems.append(f"{where}: {m} is neither a Framewire metric nor in {CLUSTER_SERIES.name}")
        if not cluster_only(expr, known):
            continue
        ours = sorted(m for m in metrics if is_ours(m))
        if ours:
            problems.append(f"{where}: mixes Kubernetes series with {', '.join(ours)} (checkable neither here nor in the run)")
        for m, used in metrics.items():
            for label in sorted(used - known.get(m, used)):
                problems.append(f"{where}: {m} has no label {label}")
        carried = set().union(*(known.get(m, set()) for m in metrics))
        for label in sorted(grouping - carried):
            problems.append(f"{where}: no series it reads has the label {label} it groups or matches on")
        tests.append({"expr": f"clamp_max(count({substitute(expr, VIEWER)}), 1)", "eval_time": "15m",
                      "exp_samples": [{"labels": "{}", "value": 1}]})
        print(f"    cluster  {title[:44]:44s} {ref}  {', '.join(sorted(metrics))[:70]}")
    suite = {"rule_files": [], "evaluation_interval": "1m",
             "tests": [{"interval": fixture["interval"], "input_series": fixture["series"], "promql_expr_test": tests}]}
    Path(out).write_text(f"# Generated by dashboard.py cluster from {CLUSTER_SERIES.name}: each cluster-only query returns data.\n"
                         + yaml.safe_dump(suite, sort_keys=False, width=1000))
    if problems:
        sys.exit("cluster-only dashboard queries:\n  " + "\n  ".join(problems))
    print(f"    {len(tests)} cluster-only queries name only labels their series carry")


def prom_query(url, expr):
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def label_values(url, query):
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    series, label = m.group(1), m.group(2)
    q = urllib.parse.urlencode({"match[]": series})
    with urllib.request.urlopen(f"{url}/api/v1/label/{label}/values?{q}", timeout=10) as r:
        return json.load(r)["data"]


def grafana_regex(values, regex):
    """A variable's Regex option: keeps the matching values, the first group if it has one."""
    if not regex:
        return values
    r = re.compile(regex.strip("/"))
    out = []
    for v in values:
        m = r.search(v)
        kept = m and (m.group(1) if r.groups else v)
        if kept and kept not in out:
            out.append(kept)
    return out


def resolve(url, variables, values):
    """Each variable's values, in order (a later one may use an earlier one); one not given
    in `values` becomes what a viewer gets by default: its "All" value, else its first."""
    found = {}
    for v in variables:
        name = v["name"]
        found[name] = grafana_regex(label_values(url, substitute(v["query"]["query"], values)), v.get("regex"))
        if name not in values and found[name]:
            values[name] = v["allValue"] if v.get("includeAll") and v.get("allValue") else found[name][0]
    return found


def cmd_query(path, url, namespace, wait):
    qs, variables = queries(path)
    _, known = cluster_series()
    cluster = {(pid, ref) for pid, title, ref, expr in qs if cluster_only(expr, known)}
    pending = {(pid, ref): (title, expr) for pid, title, ref, expr in qs if (pid, ref) not in cluster}
    results = {}
    deadline = time.time() + wait
    while True:
        values = {"namespace": namespace}
        found = resolve(url, variables, values)
        for key, (title, expr) in list(pending.items()):
            try:
                res = prom_query(url, substitute(expr, values))
            except Exception as e:  # a parse error is final
                sys.exit(f"query failed: {e}")
            if res:
                results[key] = (title, expr, len(res), res)
                del pending[key]
        if (not pending and all(found.values())) or time.time() > deadline:
            break
        time.sleep(3)
    for v in variables:
        vals = found.get(v["name"]) or []
        print(f"    {'ok ' if vals else 'EMPTY'} variable ${v['name']:10s} {len(vals):3d} values {vals[:6]}  ← {v['query']['query']}")
    for pid, title, ref, expr in qs:
        if (pid, ref) in cluster:
            print(f"    cluster       {title[:38]:38s} {ref}  (Kubernetes series: checked by `dashboard.py cluster`)")
        elif (pid, ref) in results:
            _, _, n, res = results[(pid, ref)]
            sample = res[0]
            labels = ",".join(f"{k}={v}" for k, v in sample["metric"].items() if k != "__name__")
            print(f"    ok  {n:3d} series  {title[:38]:38s} {ref}  e.g. {{{labels[:50]}}} = {sample['value'][1][:10]}")
        else:
            print(f"    EMPTY         {title[:38]:38s} {ref}  {substitute(expr, values)}")
    empty = len(pending) + sum(1 for v in found.values() if not v)
    print(f"    {len(results)} of {len(qs) - len(cluster)} queries returned data ({len(cluster)} cluster-only not run)")
    if empty:
        sys.exit(f"{empty} dashboard queries returned no data")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["rules"] and len(a) == 2:
        cmd_rules(a[1])
    elif a[:1] == ["names"] and "--" in a:
        i = a.index("--")
        cmd_names(a[1], a[2], a[i + 1:])
    elif a[:1] == ["cluster"] and len(a) == 3:
        cmd_cluster(a[1], a[2])
    elif a[:1] == ["query"] and len(a) >= 4:
        wait = float(a[a.index("--wait") + 1]) if "--wait" in a else 120
        cmd_query(a[1], a[2], a[3], wait)
    else:
        sys.exit(__doc__)
