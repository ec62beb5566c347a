#!/usr/bin/env python3
"""Structural checks of the top-level Dockerfile (no Docker engine runs in CI).

Proven: the file parses into instructions; the variant build arg selects the CPU
(debian:12 -> debian:12-slim) or CUDA (nvidia/cuda devel -> runtime) base images; the build
stage runs scripts/bootstrap and scripts/build (the scripts CI runs) and no other build
command; the final stage runs as a numeric non-root USER, EXPOSEs exactly the gRPC and
metrics ports that its ENTRYPOINT binds, declares no VOLUME (a VOLUME would be writable)
and fetches nothing at run time (no curl/wget/pip in ENTRYPOINT/CMD); the image's ports are
the ones the Helm chart's container declares.
Not proven: that the image builds, that the runtime libraries are complete, or that kilnd
starts in it; those need a Docker engine.

Usage: check_dockerfile.py REPO_ROOT
"""
import json
import os
import re
import sys


def instructions(text):
    """[(INSTRUCTION, args)] with line continuations joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    if current:
        raise AssertionError("Dockerfile ends inside a line continuation")
    return out


def stages(instrs):
    """{stage name: {"from": image, "instrs": [...]}} in order, plus the global ARGs."""
    result, order, global_args, current = {}, [], {}, None
    for word, args in instrs:
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert m, f"cannot parse FROM {args}"
            name = m.group(2) or f"stage{len(order)}"
            current = {"from": m.group(1), "instrs": []}
            result[name] = current
            order.append(name)
        elif current is None:
            assert word == "ARG", f"{word} before the first FROM"
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            current["instrs"].append((word, args))
    return result, order, global_args


def expand(image, args):
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)


def main(root):
    with open(os.path.join(root, "Dockerfile"), encoding="utf-8") as f:
        instrs = instructions(f.read())
    st, order, gargs = stages(instrs)
    failures = []

    def check(cond, message):
        if not cond:
            failures.append(message)

    check(gargs.get("KILN_VARIANT") == "cpu", "ARG KILN_VARIANT must default to cpu")
    # Resolve the stage chain for each variant: build-<v> / runtime-<v> base images.
    expected = {
        "cpu": (r"debian:12", r"debian:12-slim"),
        "cuda": (r"nvidia/cuda:[\d.]+-devel-\S+", r"nvidia/cuda:[\d.]+-runtime-\S+"),
    }
    for variant, (build_re, runtime_re) in expected.items():
        args = dict(gargs, KILN_VARIANT=variant)
        for role, pattern in (("build", build_re), ("runtime", runtime_re)):
            base = expand(st.get(role, {}).get("from", ""), args)
            check(base in st, f"{role} stage must derive from a {role}-<variant> stage")
            image = expand(st.get(base, {}).get("from", ""), args)
            check(re.fullmatch(pattern, image),
                  f"{variant}: {role} image is '{image}', expected {pattern}")
    check(order[-1] == "runtime", "the last stage (the image) must be 'runtime'")

    build_runs = [a for w, a in st["build"]["instrs"] if w == "RUN"]
    check(any(re.search(r"(^|\s|/)scripts/bootstrap(\s|$|&)", r) for r in build_runs),
          "build stage must RUN scripts/bootstrap")
    check(any(re.search(r"(^|\s)scripts/build(\s|$)", r) for r in build_runs),
          "build stage must RUN scripts/build")
    for r in build_runs:
        check(not re.search(r"\b(cmake|ninja|make|g\+\+|apt-get install)\b", r),
              f"build stage builds outside the CI scripts: RUN {r}")

    final = st["runtime"]["instrs"]
    users = [a for w, a in final if w == "USER"]
    check(users, "runtime stage must set USER")
    if users:
        uid = users[-1].split(":")[0]
        check(uid.isdigit() and int(uid) != 0,
              f"USER must be a numeric non-root uid (runAsNonRoot checks it), got {users[-1]}")
    check(not any(w == "VOLUME" for w, _ in final),
          "no VOLUME: models are mounted read-only by the operator")
    exposed = sorted(int(p.split("/")[0]) for w, a in final if w == "EXPOSE" for p in a.split())
    entry = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    check(len(entry) == 1, "exactly one exec-form ENTRYPOINT")
    bound = []
    if entry:
        check(os.path.basename(entry[0][0]) == "kilnd", "the ENTRYPOINT runs kilnd")
        for arg in entry[0]:
            m = re.fullmatch(r"--(listen|metrics_listen)=.*:(\d+)", arg)
            if m:
                bound.append(int(m.group(2)))
        check(not any(re.search(r"curl|wget|pip|apt", a) for a in entry[0]),
              "the ENTRYPOINT must not fetch anything")
    check(not any(w == "CMD" and re.search(r"curl|wget|pip|apt", a) for w, a in final),
          "CMD must not fetch anything")
    check(exposed == sorted(bound) and len(exposed) == 2,
          f"EXPOSE {exposed} must be exactly the gRPC and metrics ports kilnd binds {bound}")

    values_path = os.path.join(root, "deploy/helm/kiln/values.yaml")
    with open(values_path, encoding="utf-8") as f:
        ports_block = re.search(r"^ports:\n((?:  .*\n)+)", f.read(), re.M)
    check(ports_block is not None, "deploy/helm/kiln/values.yaml has no ports block")
    if ports_block:
        chart_ports = sorted(int(p) for p in re.findall(r":\s*(\d+)", ports_block.group(1)))
        check(chart_ports == exposed,
              f"chart ports {chart_ports} differ from the image's EXPOSE {exposed}")

    for message in failures:
        print(f"FAIL: {message}")
    if not failures:
        print(f"ok: {len(instrs)} instructions, stages {order}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
