#!/usr/bin/env python3
"""Renders a Helm chart without the helm binary (not packaged in Debian 12).

Implements the subset of Go templates + Sprig that deploy/helm/kiln uses, with Helm's
semantics, and fails loudly (exit 2) on anything else, so a template that strays from the
subset breaks CI instead of rendering wrongly:

  actions     {{ pipeline }}  {{- ... -}} (whitespace trimming)  {{/* comment */}}
  control     if / else if / else / end,  define "name" / end
  values      .Values.a.b  .Release.Name|Namespace|Service  .Chart.Name|Version|AppVersion
              .  $  "string"  123  true/false, (sub pipeline)
  functions   include quote toYaml toJson toPrettyJson nindent indent default add trunc
              trimSuffix not and or eq sha256sum b64enc required
  values      -f FILE (repeatable) deep-merged over the chart's values.yaml as Helm does
              (maps merge, lists and scalars replace, null deletes a key)

A reference to a missing value is an error (Helm would render it as empty): the renderer
doubles as a lint for typos in .Values paths. Not implemented: range, with, variables
($x := ...), tpl, lookup, Capabilities, subcharts, hooks, NOTES.txt.

Usage: render.py CHART_DIR [-f values.yaml]... [--name RELEASE] [--namespace NS]
Prints the manifests as one YAML stream, each document preceded by "# Source: <template>".
"""
import argparse
import base64
import hashlib
import json
import os
import re
import sys

import yaml


class RenderError(Exception):
    pass


_MISSING = object()


# ---------------------------------------------------------------- values

def deep_merge(base, override):
    """Helm's coalescing: maps merge recursively, null deletes, everything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def truthy(value):
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


def go_string(value):
    """fmt.Sprint-like text for scalars inserted into the output."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        raise RenderError(f"cannot print a {type(value).__name__} without toYaml/toJson")
    return str(value)


def to_yaml(value):
    # sigs.k8s.io/yaml sorts keys and does not indent lists under their key; Helm trims the
    # final newline.
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True, width=1 << 30)
    if text.endswith("...\n"):
        text = text[:-4]
    return text.rstrip("\n")


def indent(n, text):
    pad = " " * n
    return pad + text.replace("\n", "\n" + pad)


# ---------------------------------------------------------------- lexing

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def lex(text, source):
    """Splits into ('text', s) and ('action', s) with trimming already applied."""
    parts = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        parts.append(("text", chunk))
        body = m.group(2).strip()
        if not (body.startswith("/*") and body.endswith("*/")):
            parts.append(("action", body, source))
        trim_next = bool(m.group(3))
        pos = m.end()
    chunk = text[pos:]
    if trim_next:
        chunk = chunk.lstrip()
    parts.append(("text", chunk))
    return parts


_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\(|\)|\||[^\s()|]+)')


def tokenize(expr):
    tokens = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise RenderError(f"cannot parse '{expr}'")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


# ---------------------------------------------------------------- parsing

def parse(parts):
    """Builds a tree: list of nodes; ('text', s) | ('out', expr) | ('if', [(cond, body)], else)."""
    defines = {}
    pos = 0

    def block(stop_words):
        nonlocal pos
        nodes = []
        while pos < len(parts):
            part = parts[pos]
            if part[0] == "text":
                nodes.append(("text", part[1]))
                pos += 1
                continue
            body, source = part[1], part[2]
            word = body.split(None, 1)[0] if body else ""
            if word in stop_words:
                return nodes, body
            pos += 1
            if word == "if":
                branches = [(body[2:].strip(), None)]
                else_body = None
                while True:
                    inner, stop = block({"else", "end"})
                    branches[-1] = (branches[-1][0], inner)
                    pos += 1
                    if stop == "end":
                        break
                    rest = stop[4:].strip()
                    if rest.startswith("if "):
                        branches.append((rest[3:].strip(), None))
                        continue
                    if rest:
                        raise RenderError(f"{source}: unsupported '{stop}'")
                    else_body, stop = block({"end"})
                    pos += 1
                    break
                nodes.append(("if", branches, else_body))
            elif word == "define":
                name = json.loads(body[6:].strip())
                inner, _ = block({"end"})
                pos += 1
                defines[name] = inner
            elif word in ("range", "with", "template", "block", "else", "end") or ":=" in body:
                raise RenderError(f"{source}: '{word}' is outside the supported template subset")
            else:
                nodes.append(("out", body, source))
        if stop_words:
            raise RenderError(f"missing {{{{ end }}}} (expected one of {sorted(stop_words)})")
        return nodes, None

    nodes, _ = block(set())
    return nodes, defines


# ---------------------------------------------------------------- evaluation

class Renderer:
    def __init__(self, root, defines):
        self.root = root
        self.defines = defines

    def field(self, path, dot):
        if path == ".":
            return dot
        if path == "$":
            return self.root
        if path.startswith("$."):
            dot, path = self.root, path[1:]
        value = dot
        for key in path.split(".")[1:]:
            if not isinstance(value, dict) or key not in value:
                raise RenderError(f"{path}: no such value")
            value = value[key]
        return value

    def operand(self, tokens, i, dot):
        tok = tokens[i]
        if tok == "(":
            depth, j = 1, i + 1
            while depth:
                if j >= len(tokens):
                    raise RenderError("unbalanced parentheses")
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                j += 1
            return self.pipeline(tokens[i + 1:j - 1], dot), j
        if tok.startswith('"'):
            return json.loads(tok), i + 1
        if re.fullmatch(r"-?\d+", tok):
            return int(tok), i + 1
        if tok in ("true", "false"):
            return tok == "true", i + 1
        if tok.startswith(".") or tok.startswith("$"):
            return self.field(tok, dot), i + 1
        raise RenderError(f"unexpected '{tok}'")

    def command(self, tokens, dot, piped=_MISSING):
        head = tokens[0]
        if head in FUNCTIONS:
            args = []
            i = 1
            while i < len(tokens):
                value, i = self.operand(tokens, i, dot)
                args.append(value)
            if piped is not _MISSING:
                args.append(piped)
            return FUNCTIONS[head](self, *args)
        if piped is not _MISSING:
            raise RenderError(f"'{head}' is not a function")
        value, i = self.operand(tokens, 0, dot)
        if i != len(tokens):
            raise RenderError(f"unexpected '{tokens[i]}'")
        return value

    def pipeline(self, tokens, dot):
        commands, current, depth = [], [], 0
        for tok in tokens:
            depth += {"(": 1, ")": -1}.get(tok, 0)
            if tok == "|" and depth == 0:
                commands.append(current)
                current = []
            else:
                current.append(tok)
        commands.append(current)
        value = _MISSING
        for cmd in commands:
            if not cmd:
                raise RenderError("empty command in pipeline")
            value = self.command(cmd, dot, value)
        return value

    def evaluate(self, expr, dot):
        return self.pipeline(tokenize(expr), dot)

    def run(self, nodes, dot):
        out = []
        for node in nodes:
            if node[0] == "text":
                out.append(node[1])
            elif node[0] == "out":
                try:
                    out.append(go_string(self.evaluate(node[1], dot)))
                except RenderError as e:
                    raise RenderError(f"{node[2]}: {{{{ {node[1]} }}}}: {e}") from None
            else:
                _, branches, else_body = node
                for cond, body in branches:
                    if truthy(self.evaluate(cond, dot)):
                        out.append(self.run(body, dot))
                        break
                else:
                    if else_body is not None:
                        out.append(self.run(else_body, dot))
        return "".join(out)


def _include(r, name, dot):
    if name not in r.defines:
        raise RenderError(f"include: no template '{name}'")
    return r.run(r.defines[name], dot)


def _required(_, message, value):
    if not truthy(value):
        raise RenderError(message)
    return value


def _trim_suffix(_, suffix, s):
    return s[:-len(suffix)] if suffix and s.endswith(suffix) else s


FUNCTIONS = {
    "include": _include,
    "quote": lambda _, v: json.dumps(go_string(v)),
    "toYaml": lambda _, v: to_yaml(v),
    "toJson": lambda _, v: json.dumps(v, sort_keys=True, separators=(",", ":")),
    "toPrettyJson": lambda _, v: json.dumps(v, sort_keys=True, indent=2),
    "nindent": lambda _, n, s: "\n" + indent(n, s),
    "indent": lambda _, n, s: indent(n, s),
    "default": lambda _, d, v=None: v if truthy(v) else d,
    "add": lambda _, *xs: sum(int(x) for x in xs),
    "trunc": lambda _, n, s: s[:n],
    "trimSuffix": _trim_suffix,
    "not": lambda _, v: not truthy(v),
    "and": lambda _, *xs: next((x for x in xs if not truthy(x)), xs[-1]),
    "or": lambda _, *xs: next((x for x in xs if truthy(x)), xs[-1]),
    "eq": lambda _, a, *bs: any(a == b for b in bs),
    "sha256sum": lambda _, s: hashlib.sha256(s.encode()).hexdigest(),
    "b64enc": lambda _, s: base64.b64encode(go_string(s).encode()).decode(),
    "required": _required,
}


# ---------------------------------------------------------------- chart

def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return data if data is not None else {}


def render_chart(chart_dir, value_files=(), name="kiln", namespace="default"):
    """Returns [(template_name, rendered_text)] for every non-empty manifest template."""
    chart = load_yaml(os.path.join(chart_dir, "Chart.yaml"))
    values = load_yaml(os.path.join(chart_dir, "values.yaml"))
    for path in value_files:
        values = deep_merge(values, load_yaml(path))
    root = {
        "Values": values,
        "Release": {"Name": name, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": chart["name"], "Version": chart["version"],
                  "AppVersion": chart.get("appVersion", "")},
    }
    template_dir = os.path.join(chart_dir, "templates")
    files = sorted(os.listdir(template_dir))
    defines, bodies = {}, []
    for fname in files:
        with open(os.path.join(template_dir, fname), encoding="utf-8") as f:
            nodes, defs = parse(lex(f.read(), f"templates/{fname}"))
        defines.update(defs)
        if not fname.startswith("_") and fname.endswith((".yaml", ".yml")):
            bodies.append((f"templates/{fname}", nodes))
    renderer = Renderer(root, defines)
    out = []
    for source, nodes in bodies:
        text = renderer.run(nodes, root)
        if text.strip():
            out.append((source, text.strip("\n") + "\n"))
    return out


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--name", default="kiln")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args(argv)
    try:
        manifests = render_chart(args.chart, args.values, args.name, args.namespace)
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 2
    for source, text in manifests:
        sys.stdout.write(f"---\n# Source: kiln/{source}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
