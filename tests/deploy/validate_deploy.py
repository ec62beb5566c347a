#!/usr/bin/env python3
"""Renders the Helm chart (deploy/helm/render.py; no helm binary in Debian 12) for each
values set, validates every manifest against the Kubernetes OpenAPI JSON schemas bundled in
the `kubernetes-validate` PyPI package (strict: unknown fields fail; offline), lints the
chart, and checks deploy/k8s/ is the rendered chart.

Kubernetes versions: the chart's minimum (1.27, native gRPC probes GA) and the newest the
package bundles. CRD kinds (ServiceMonitor) have no bundled schema: they get a structural
check of the fields the chart sets, not the operator's CRD schema.
Lint (what `helm lint` would not catch either): selectors match pod labels, Service target
ports exist, probes use the gRPC port with readiness/startup on "" and liveness on
"liveness", terminationGracePeriodSeconds covers preStop + kilnd's drain + its 5 s shutdown
grace, non-root / read-only root / read-only model mount, GPU resources only in the GPU
variant, and (with --kilnd) the ConfigMap's kilnd.json is accepted by `kilnd --print_config`.

Usage: validate_deploy.py REPO_ROOT [--kilnd PATH]   (needs PyYAML + kubernetes-validate)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

MIN_K8S = "1.27.0"
KILND_SHUTDOWN_GRACE_S = 5  # kilnd.cc: Shutdown(5 s) when the drain deadline passed

VARIANTS = {
    "gpu": [],
    "cpu": ["values-cpu.yaml"],
    "tls-hpa": ["ci/tls-hpa-values.yaml"],
}


def k8s_versions():
    versions = sorted(set(kubernetes_validate.utils.all_versions()),
                      key=lambda v: tuple(int(x) for x in v.split(".")))
    assert MIN_K8S in versions, f"kubernetes-validate lacks {MIN_K8S}"
    return [MIN_K8S, versions[-1]]


def check_service_monitor(doc, fail):
    spec = doc.get("spec", {})
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        fail("ServiceMonitor: apiVersion must be monitoring.coreos.com/v1")
    if not isinstance(spec.get("selector", {}).get("matchLabels"), dict):
        fail("ServiceMonitor: spec.selector.matchLabels missing")
    for ep in spec.get("endpoints", []) or [None]:
        if not isinstance(ep, dict) or not isinstance(ep.get("port"), str):
            fail("ServiceMonitor: every endpoint needs a named port")
    allowed = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
               "podTargetLabels", "sampleLimit"}
    for key in spec:
        if key not in allowed:
            fail(f"ServiceMonitor: unexpected spec.{key}")


def validate_docs(where, docs, versions, fail):
    for doc in docs:
        kind = doc.get("kind", "?")
        if kind == "ServiceMonitor":
            check_service_monitor(doc, lambda m: fail(f"{where}: {m}"))
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                fail(f"{where}: {kind} {doc['metadata'].get('name')} (k8s {version}): "
                     f"{path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                fail(f"{where}: no schema for {doc.get('apiVersion')} {kind} in k8s {version}")


def subset(small, big):
    return all(big.get(k) == v for k, v in small.items())


def lint(variant, docs, values, fail, kilnd):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deploy = by_kind["Deployment"][0]
    pod = deploy["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    if not subset(deploy["spec"]["selector"]["matchLabels"], pod_labels):
        fail("Deployment selector does not match its pod labels")
    for kind in ("Service", "PodDisruptionBudget"):
        for d in by_kind.get(kind, []):
            sel = d["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            if not subset(sel, pod_labels):
                fail(f"{kind} selector does not select the pods")
    spec = pod["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if sorted(ports) != ["grpc", "metrics"]:
        fail(f"container ports {sorted(ports)}: only grpc and metrics")
    service = by_kind["Service"][0]
    for p in service["spec"]["ports"]:
        if p["targetPort"] not in ports:
            fail(f"Service port {p['name']} targets unknown port {p['targetPort']}")
    for sm in by_kind.get("ServiceMonitor", []):
        for ep in sm["spec"]["endpoints"]:
            if ep["port"] not in {p["name"] for p in service["spec"]["ports"]}:
                fail(f"ServiceMonitor endpoint port {ep['port']} is not a Service port")
            if not subset(sm["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]):
                fail("ServiceMonitor does not select the Service")

    want = {"startupProbe": "", "readinessProbe": "", "livenessProbe": "liveness"}
    for probe, service_name in want.items():
        p = container.get(probe)
        if p is None:
            fail(f"{probe} missing")
        elif "grpc" in p:
            if p["grpc"]["port"] != ports["grpc"] or p["grpc"].get("service") != service_name:
                fail(f"{probe}: grpc port/service must be {ports['grpc']}/'{service_name}'")
        elif "exec" in p:
            cmd = p["exec"]["command"]
            if "health" not in cmd or (service_name and cmd[-1] != service_name):
                fail(f"{probe}: exec probe must run 'kilnctl ... health {service_name}'")
            if not values["tls"]["enabled"]:
                fail(f"{probe}: exec probe without TLS (use the native grpc probe)")
        else:
            fail(f"{probe}: neither grpc nor exec")

    config_map = by_kind["ConfigMap"][0]
    config = json.loads(config_map["data"]["kilnd.json"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    sleep_s = int(pre_stop[-1]) if os.path.basename(pre_stop[0]) == "sleep" else 0
    need = sleep_s + config.get("drain_timeout_s", 30) + KILND_SHUTDOWN_GRACE_S
    grace = spec["terminationGracePeriodSeconds"]
    if grace <= need:
        fail(f"terminationGracePeriodSeconds {grace} must exceed preStop {sleep_s} s + "
             f"drain_timeout_s + {KILND_SHUTDOWN_GRACE_S} s = {need} s")

    psc, sc = spec.get("securityContext", {}), container.get("securityContext", {})
    if not psc.get("runAsNonRoot") or psc.get("runAsUser", 0) == 0:
        fail("pod must run as non-root with a numeric runAsUser")
    if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation", True):
        fail("container must have a read-only root and no privilege escalation")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    if not mounts.get("models", {}).get("readOnly"):
        fail("the model store must be mounted read-only")
    volumes = {v["name"]: v for v in spec["volumes"]}
    pvc = volumes["models"].get("persistentVolumeClaim")
    if pvc is not None and not pvc.get("readOnly"):
        fail("the model PVC must be read-only")
    if not any(a.startswith("--config=" + mounts["config"]["mountPath"])
               for a in container["args"]):
        fail("kilnd is not pointed at the mounted config")
    gpu = "nvidia.com/gpu" in container["resources"].get("limits", {})
    if gpu != (variant != "cpu"):
        fail(f"variant {variant}: nvidia.com/gpu limit {'present' if gpu else 'absent'}")

    if kilnd:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(config_map["data"]["kilnd.json"])
        try:
            r = subprocess.run([kilnd, f"--config={f.name}", "--print_config"],
                               capture_output=True, text=True, timeout=60)
        finally:
            os.unlink(f.name)
        if r.returncode != 0:
            fail(f"kilnd rejects the ConfigMap's kilnd.json: {r.stderr.strip()}")
        else:
            effective = json.loads(r.stdout)
            for key, value in config.items():
                if key != "preload" and effective.get(key) != value:
                    fail(f"kilnd --print_config: {key} is {effective.get(key)!r}, "
                         f"config says {value!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--kilnd", default="")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(args.root, "deploy/helm"))
    import render  # noqa: E402  (deploy/helm/render.py)

    chart = os.path.join(args.root, "deploy/helm/kiln")
    versions = k8s_versions()
    failures = []
    with open(os.path.join(chart, "Chart.yaml"), encoding="utf-8") as f:
        meta = yaml.safe_load(f)
    for key in ("apiVersion", "name", "version", "appVersion"):
        if key not in meta:
            failures.append(f"Chart.yaml: no {key}")
    if meta.get("apiVersion") != "v2":
        failures.append("Chart.yaml: apiVersion must be v2")

    rendered_default = None
    count = 0
    for variant, files in VARIANTS.items():
        paths = [os.path.join(chart, f) for f in files]
        fail = lambda m, v=variant: failures.append(f"[{variant}] {m}")  # noqa: E731
        try:
            manifests = render.render_chart(chart, paths)
        except render.RenderError as e:
            fail(f"render: {e}")
            continue
        values = render.load_yaml(os.path.join(chart, "values.yaml"))
        for p in paths:
            values = render.deep_merge(values, render.load_yaml(p))
        docs = []
        for source, text in manifests:
            try:
                loaded = [d for d in yaml.safe_load_all(text) if d]
            except yaml.YAMLError as e:
                fail(f"{source}: not YAML: {e}")
                continue
            docs += loaded
        validate_docs(variant, docs, versions, fail)
        lint(variant, docs, values, fail, args.kilnd)
        count += len(docs)
        if variant == "gpu":
            rendered_default = "".join(f"---\n# Source: kiln/{s}\n{t}" for s, t in manifests)

    k8s_dir = os.path.join(args.root, "deploy/k8s")
    with open(os.path.join(k8s_dir, "kiln.yaml"), encoding="utf-8") as f:
        committed = f.read()
    # kiln.yaml = a comment header + the chart rendered with its default values.
    if rendered_default is not None and not committed.endswith(rendered_default):
        failures.append("deploy/k8s/kiln.yaml is stale: regenerate it (see deploy/README.md)")
    for name in sorted(os.listdir(k8s_dir)):
        if name.endswith(".yaml") and name != "kiln.yaml":
            with open(os.path.join(k8s_dir, name), encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
            validate_docs(f"deploy/k8s/{name}", docs, versions,
                          lambda m: failures.append(m))
            count += len(docs)

    for message in failures:
        print(f"FAIL: {message}")
    if not failures:
        print(f"ok: {count} manifests valid against Kubernetes {' and '.join(versions)} "
              f"schemas (strict), chart lint passed{' with kilnd' if args.kilnd else ''}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
