#!/usr/bin/env python3
"""The Grafana dashboard's queries, for the deploy checks.

    dashboard.py rules DASHBOARD.json
        every panel query as a Prometheus recording rule (for `promtool check rules`, which
        parses each one), with Grafana's variables replaced as a viewer's defaults would.
    dashboard.py names DASHBOARD.json RULES.yaml -- SOURCE_DIR...
        every metric the dashboard and the alerts use must be one the services define (a
        `"framewire_…"` string in the sources); prints which panel/alert uses what.
    dashboard.py query DASHBOARD.json PROMETHEUS_URL NAMESPACE [--wait SECONDS]
        runs every query (and the variables' label_values lookups) against a live Prometheus;
        retries until each returns data or the time is up; prints one line per query with the
        number of series; exits 1 if any stayed empty.
"""
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

VARS = {"$__rate_interval": "5m", "$__interval": "15s"}  # as Grafana on a ~6 h range
METRIC = re.compile(r"\b(framewire_[a-z0-9_]+|up)\b(?!\s*[=~!(])")


def queries(path):
    dash = json.load(open(path))
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["id"], p["title"], t["refId"], t["expr"]))
    variables = [(v["name"], v["query"]["query"]) for v in dash["templating"]["list"] if v["type"] == "query"]
    return out, variables


def substitute(expr, namespace="framewire"):
    for k, v in VARS.items():
        expr = expr.replace(k, v)
    return expr.replace("$namespace", namespace).replace("$camera", ".*")


def base_name(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def cmd_rules(path):
    qs, _ = queries(path)
    print("groups:\n  - name: dashboard\n    rules:")
    for pid, title, ref, expr in qs:
        print(f"      - record: dashboard:panel{pid}_{ref.lower()}")
        print(f"        expr: {json.dumps(substitute(expr))}")


def cmd_names(path, rules, dirs):
    import yaml
    defined = set()
    out = subprocess.run(["grep", "-rhoE", '"framewire_[a-z0-9_]+"', *dirs], capture_output=True, text=True).stdout
    defined = {s.strip('"') for s in out.split()}
    uses = {}
    qs, variables = queries(path)
    for pid, title, ref, expr in qs:
        for m in METRIC.findall(expr):
            uses.setdefault(base_name(m), set()).add(f"panel '{title}'")
    for name, q in variables:
        for m in METRIC.findall(q):
            uses.setdefault(base_name(m), set()).add(f"variable ${name}")
    for g in yaml.safe_load(open(rules))["groups"]:
        for r in g["rules"]:
            for m in METRIC.findall(r["expr"]):
                uses.setdefault(base_name(m), set()).add(f"alert {r.get('alert') or r.get('record')}")
    unknown = []
    for name in sorted(uses):
        known = name == "up" or name in defined
        where = ", ".join(sorted(uses[name]))
        print(f"    {'ok ' if known else 'MISSING'} {name:48s} {where[:110]}")
        if not known:
            unknown.append(name)
    if unknown:
        sys.exit(f"metrics used by the dashboard/alerts that no service defines: {', '.join(unknown)}")


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


def cmd_query(path, url, namespace, wait):
    qs, variables = queries(path)
    pending = {(pid, ref): (title, expr) for pid, title, ref, expr in qs}
    results = {}
    var_results = {}
    deadline = time.time() + wait
    while True:
        for key, (title, expr) in list(pending.items()):
            try:
                res = prom_query(url, substitute(expr, namespace))
            except Exception as e:  # a parse error is final
                sys.exit(f"query failed: {e}")
            if res:
                results[key] = (title, expr, len(res), res)
                del pending[key]
        for name, q in variables:
            if not var_results.get(name):
                var_results[name] = label_values(url, q.replace("$namespace", namespace))
        if (not pending and all(var_results.values())) or time.time() > deadline:
            break
        time.sleep(3)
    for name, q in variables:
        vals = var_results.get(name) or []
        print(f"    {'ok ' if vals else 'EMPTY'} variable ${name:10s} {len(vals):3d} values {vals[:6]}  ← {q}")
    for pid, title, ref, expr in qs:
        if (pid, ref) in results:
            _, _, n, res = results[(pid, ref)]
            sample = res[0]
            labels = ",".join(f"{k}={v}" for k, v in sample["metric"].items() if k != "__name__")
            print(f"    ok  {n:3d} series  {title[:38]:38s} {ref}  e.g. {{{labels[:50]}}} = {sample['value'][1][:10]}")
        else:
            print(f"    EMPTY         {title[:38]:38s} {ref}  {substitute(expr, namespace)}")
    empty = len(pending) + sum(1 for v in var_results.values() if not v)
    print(f"    {len(results)} of {len(qs)} queries returned data")
    if empty:
        sys.exit(f"{empty} dashboard queries returned no data")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[:1] == ["rules"] and len(a) == 2:
        cmd_rules(a[1])
    elif a[:1] == ["names"] and "--" in a:
        i = a.index("--")
        cmd_names(a[1], a[2], a[i + 1:])
    elif a[:1] == ["query"] and len(a) >= 4:
        wait = float(a[a.index("--wait") + 1]) if "--wait" in a else 120
        cmd_query(a[1], a[2], a[3], wait)
    else:
        sys.exit(__doc__)
