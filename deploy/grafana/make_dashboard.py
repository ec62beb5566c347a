#!/usr/bin/env python3
"""Writes deploy/grafana/kiln-dashboard.json (run after editing; CI checks it is in sync).

Every query uses only the names in deploy/metrics.txt (tests/deploy/check_metrics.py).
Usage: make_dashboard.py [OUTPUT]   (default: kiln-dashboard.json next to this script)
"""
import json
import os
import sys

SEL = 'model=~"$model"'


def target(expr, legend):
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr,
            "legendFormat": legend, "refId": "A"}


def quantiles(metric, by="model", extra=""):
    sel = SEL + extra
    return [target(f'histogram_quantile({q}, sum by (le, {by}) '
                   f'(rate({metric}_bucket{{{sel}}}[$__rate_interval])))',
                   f"p{int(q * 100)} {{{{{by.split(', ')[-1]}}}}}")
            for q in (0.5, 0.9, 0.99)]


def panel(title, targets, unit, x, y, w=12, h=8, kind="timeseries", description=""):
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return {"type": kind, "title": title, "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": targets}


def row(title, y):
    return {"type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def dashboard():
    panels = [
        row("Latency", 0),
        panel("Time to first token", quantiles("kiln_time_to_first_token_seconds"), "s", 0, 1),
        panel("Inter-token latency", quantiles("kiln_inter_token_latency_seconds"), "s", 12, 1),
        panel("End-to-end request latency", quantiles("kiln_e2e_request_latency_seconds"),
              "s", 0, 9),
        panel("Queue time", quantiles("kiln_request_queue_time_seconds"), "s", 12, 9),
        row("Throughput and queue", 17),
        panel("Generated tokens / s", [
            target(f'sum by (model) (rate(kiln_generation_tokens_total{{{SEL}}}'
                   f'[$__rate_interval]))', "{{model}} generated"),
            target(f'sum by (model) (rate(kiln_prompt_tokens_total{{{SEL}}}'
                   f'[$__rate_interval]))', "{{model}} prompt")], "tokens/s", 0, 18),
        panel("Finished requests / s by reason", [
            target(f'sum by (model, reason) (rate(kiln_requests_finished_total{{{SEL}}}'
                   f'[$__rate_interval]))', "{{model}} {{reason}}")], "reqps", 12, 18),
        panel("Running and waiting requests", [
            target(f'sum by (model) (kiln_requests_running{{{SEL}}})', "{{model}} running"),
            target(f'sum by (model) (kiln_requests_waiting{{{SEL}}})', "{{model}} waiting")],
              "short", 0, 26),
        panel("Preemptions / s", [
            target(f'sum by (model) (rate(kiln_preemptions_total{{{SEL}}}[$__rate_interval]))',
                   "{{model}}")], "short", 12, 26),
        row("KV cache and memory", 34),
        panel("KV cache usage", [
            target(f'max by (model) (kiln_kv_usage_ratio{{{SEL}}})', "{{model}}")],
              "percentunit", 0, 35),
        panel("Prefix cache hit rate", [
            target(f'sum by (model) (rate(kiln_prefix_cache_hits_total{{{SEL}}}'
                   f'[$__rate_interval])) / sum by (model) (rate('
                   f'kiln_prefix_cache_queries_total{{{SEL}}}[$__rate_interval]))',
                   "{{model}}")], "percentunit", 12, 35),
        panel("Device memory by kind", [
            target('sum by (instance, device, kind) (kiln_device_memory_bytes'
                   '{kind!="total"})', "{{instance}} {{device}} {{kind}}")], "bytes", 0, 43,
              description="weights, kv_cache, adapters, workspace, free and budget per device"),
        panel("Model weights per device", [
            target(f'sum by (model, device) (kiln_model_weight_bytes{{{SEL}}})',
                   "{{model}} {{device}}")], "bytes", 12, 43),
        row("Models and adapters", 51),
        panel("Models loaded", [target('sum(kiln_models_loaded)', "models")], "short",
              0, 52, w=6, kind="stat"),
        panel("Model loads / s by status", [
            target('sum by (status) (rate(kiln_model_loads_total[$__rate_interval]))',
                   "{{status}}")], "short", 6, 52, w=9),
        panel("Model load duration", [
            target('histogram_quantile(0.9, sum by (le) '
                   '(rate(kiln_model_load_duration_seconds_bucket[$__rate_interval])))',
                   "p90")], "s", 15, 52, w=9),
        panel("Adapters resident by tier", [
            target(f'sum by (model, tier) (kiln_adapters_resident{{{SEL}}})',
                   "{{model}} {{tier}}")], "short", 0, 60),
        panel("Adapter loads / s by status", [
            target('sum by (status) (rate(kiln_adapter_loads_total[$__rate_interval]))',
                   "{{status}}")], "short", 12, 60),
        row("RPCs and errors", 68),
        panel("RPC errors / s by code", [
            target('sum by (method, code) (rate(kiln_rpc_requests_total{code!="OK"}'
                   '[$__rate_interval]))', "{{method}} {{code}}")], "reqps", 0, 69),
        panel("RPC duration p99 by method", [
            target('histogram_quantile(0.99, sum by (le, method) '
                   '(rate(kiln_rpc_duration_seconds_bucket[$__rate_interval])))',
                   "{{method}}")], "s", 12, 69),
        panel("RPCs in flight", [
            target('sum by (method) (kiln_rpc_in_flight)', "{{method}}")], "short", 0, 77),
        panel("Draining replicas / uptime", [
            target('sum(kiln_draining)', "draining"),
            target('min(kiln_uptime_seconds)', "min uptime (s)")], "short", 12, 77),
    ]
    return {
        "title": "kiln",
        "uid": "kiln-overview",
        "tags": ["kiln", "llm"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Data source"},
            {"name": "model", "type": "query", "label": "Model", "includeAll": True,
             "multi": True, "allValue": ".*", "refresh": 2,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(kiln_requests_running, model)",
                       "refId": "model"},
             "definition": "label_values(kiln_requests_running, model)"},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render():
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "kiln-dashboard.json")
    with open(out, "w", encoding="utf-8") as f:
        f.write(render())
