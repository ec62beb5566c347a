#!/usr/bin/env python3
"""Every metric the Grafana dashboard, the alert rules and the prometheus-adapter rules
query must be a name in deploy/metrics.txt (histograms also as _bucket/_sum/_count), and
every label they filter or group kiln metrics by must be one of that metric's labels.
Also: the dashboard JSON is what deploy/grafana/make_dashboard.py writes, every rule has
alert/expr/summary, and the server metrics listed exist in server/metrics.cc.

Usage: check_metrics.py REPO_ROOT   (needs PyYAML)
"""
import importlib.util
import json
import os
import re
import sys

import yaml

# Labels every scraped series carries (target labels) besides the metric's own.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
KILN_NAME = re.compile(r"\bkiln_[a-z0-9_]+\b")


def load_metrics(path):
    metrics = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, kind, labels = line.split()
            assert kind in ("counter", "gauge", "histogram"), f"{name}: bad type {kind}"
            metrics[name] = (kind, set() if labels == "-" else set(labels.split(",")))
    return metrics


def resolve(name, metrics):
    """The listed metric a series name belongs to, and the extra labels it allows."""
    if name in metrics:
        kind, labels = metrics[name]
        return name, labels
    for suffix, extra in (("_bucket", {"le"}), ("_sum", set()), ("_count", set())):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base in metrics and metrics[base][0] == "histogram":
            return base, metrics[base][1] | extra
    return None, None


def check_expr(where, expr, metrics, failures, derived=()):
    names = set(KILN_NAME.findall(expr)) - set(derived)
    if not names:
        return 0
    allowed = set(TARGET_LABELS)
    for name in sorted(names):
        base, labels = resolve(name, metrics)
        if base is None:
            failures.append(f"{where}: '{name}' is not in deploy/metrics.txt")
        else:
            allowed |= labels
    # Labels used in selectors {l=..}, by (...), without (...), on (...).
    used = set(re.findall(r"[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!=|!~|=)", expr))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        used |= {g.strip() for g in group.split(",") if g.strip()}
    for label in sorted(used - allowed - {"__name__"}):
        if label.startswith("<<"):
            continue
        failures.append(f"{where}: label '{label}' is not a label of {sorted(names)}")
    return len(names)


def walk_targets(panels):
    for p in panels:
        for t in p.get("targets", []):
            yield p.get("title", "?"), t.get("expr", "")
        yield from walk_targets(p.get("panels", []))


def main(root):
    metrics = load_metrics(os.path.join(root, "deploy/metrics.txt"))
    failures, checked = [], 0

    dash_path = os.path.join(root, "deploy/grafana/kiln-dashboard.json")
    with open(dash_path, encoding="utf-8") as f:
        dash_text = f.read()
    dash = json.loads(dash_text)
    spec = importlib.util.spec_from_file_location(
        "make_dashboard", os.path.join(root, "deploy/grafana/make_dashboard.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    if gen.render() != dash_text:
        failures.append("kiln-dashboard.json is stale: run deploy/grafana/make_dashboard.py")
    for title, expr in walk_targets(dash["panels"]):
        checked += check_expr(f"dashboard panel '{title}'", expr, metrics, failures)
    for var in dash["templating"]["list"]:
        if "definition" in var:
            checked += check_expr(f"dashboard variable {var['name']}", var["definition"],
                                  metrics, failures)
    wanted = ["time_to_first_token", "inter_token_latency", "generation_tokens",
              "requests_waiting", "kv_usage_ratio", "device_memory_bytes", "adapters_resident",
              "kiln_rpc_requests_total{code"]
    for w in wanted:
        if w not in dash_text:
            failures.append(f"dashboard has no panel on {w}")

    with open(os.path.join(root, "deploy/prometheus/kiln-rules.yaml"), encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    alerts = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            if not name or "expr" not in rule:
                failures.append(f"rule group {group['name']}: a rule lacks alert/expr")
                continue
            if "alert" in rule and "summary" not in rule.get("annotations", {}):
                failures.append(f"alert {name}: no summary annotation")
            if rule["expr"].count("(") != rule["expr"].count(")"):
                failures.append(f"alert {name}: unbalanced parentheses")
            alerts += 1
            checked += check_expr(f"alert {name}", rule["expr"], metrics, failures)

    with open(os.path.join(root, "deploy/prometheus/adapter-rules.yaml"),
              encoding="utf-8") as f:
        adapter = yaml.safe_load(f)
    derived = [r["name"]["as"] for r in adapter["rules"]]
    for r in adapter["rules"]:
        checked += check_expr(f"adapter rule {r['name']['as']}", r["seriesQuery"] + " " +
                              r["metricsQuery"], metrics, failures, derived)
    chart_hpa = os.path.join(root, "deploy/helm/kiln/templates/hpa.yaml")
    with open(chart_hpa, encoding="utf-8") as f:
        for name in re.findall(r"name: (kiln_\w+)", f.read()):
            if name not in derived:
                failures.append(f"hpa.yaml uses '{name}', which adapter-rules.yaml does not define")

    with open(os.path.join(root, "server/metrics.cc"), encoding="utf-8") as f:
        server_names = set(re.findall(r'Name\("(kiln_\w+)"\)', f.read()))
    for name in ("kiln_build_info", "kiln_rpc_requests_total", "kiln_rpc_duration_seconds",
                 "kiln_rpc_in_flight", "kiln_draining", "kiln_uptime_seconds"):
        if name not in metrics or name not in server_names:
            failures.append(f"server metric {name} missing from metrics.txt or server/metrics.cc")

    for message in failures:
        print(f"FAIL: {message}")
    if not failures:
        print(f"ok: {checked} metric references in the dashboard, {alerts} alerts and the "
              f"adapter rules; all in deploy/metrics.txt ({len(metrics)} metrics)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
