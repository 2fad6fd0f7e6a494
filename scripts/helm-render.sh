#!/usr/bin/env bash
# Renders a Helm chart with Helm's own template engine, without a `helm`
# binary or a cluster, and optionally checks the result: like
# `helm template`, plus `helm lint` and Kubernetes schema validation.
#
#   scripts/helm-render.sh [OPTIONS] CHART
#     -f, --values FILE     values file (repeat: later ones win, as in helm)
#     --set K=V             a --set expression (Helm's own parser)
#     --set-file K=PATH     a --set-file expression (value read from PATH)
#     --name NAME           release name (default: chorus)
#     --namespace NS        release namespace (default: default)
#     --revision N          release revision (default: 1)
#     --lint                run `helm lint --strict` with the same values
#                           first; any finding fails
#     --validate            check every rendered object against the
#                           Kubernetes OpenAPI schemas, strictly (unknown
#                           fields fail), for each version in
#                           CHORUS_KUBE_VERSIONS (default "1.27.0 1.37.0")
#     --json                print a JSON array of {"source", "object"}
#                           instead of a YAML stream
#
# Exit code 0 when it rendered (and passed the checks asked for), 1 with
# the reason on stderr otherwise.
#
# No Helm binary is packaged for Debian here, so Helm comes from PyPI:
# `helm-python-sdk` wraps libhelm_c, a C build of Helm's Go SDK (v4), so
# this is Helm's real engine (Go templates, Sprig, .Files, coalescing of
# values), not a look-alike. `kubernetes-validate` bundles the OpenAPI
# schemas of each Kubernetes release, so validation is offline. Both go
# into a venv under the user's cache, created on first use.
set -euo pipefail

VENV="${CHORUS_HELM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chorus/helm-venv}"
# Pinned: the versions these scripts and the chart were checked with.
HELM_SDK_VERSION="${CHORUS_HELM_SDK_VERSION:-0.2.2}"
KUBE_VALIDATE_VERSION="${CHORUS_KUBE_VALIDATE_VERSION:-1.37.0}"

log() { echo "helm-render.sh: $*" >&2; }

# Both packages at their pinned versions, importable from the venv's python.
installed() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" - "$HELM_SDK_VERSION" "$KUBE_VALIDATE_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("helm-python-sdk"), version("kubernetes-validate")) == tuple(sys.argv[1:3]) else 1)
PY
}

install() {
  installed && return 0
  command -v python3 >/dev/null || { log "python3 not found (3.10 or newer is needed)"; exit 1; }
  mkdir -p "$(dirname "$VENV")"
  # Tests render in parallel: one installs, the others wait for it.
  (
    flock 9
    if ! installed; then
      log "installing helm-python-sdk==$HELM_SDK_VERSION and kubernetes-validate==$KUBE_VALIDATE_VERSION into $VENV"
      [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" >&2
      "$VENV/bin/pip" install -q --disable-pip-version-check \
        "helm-python-sdk==$HELM_SDK_VERSION" "kubernetes-validate==$KUBE_VALIDATE_VERSION" >&2
    fi
  ) 9>"$(dirname "$VENV")/.helm-venv.lock"
  installed || { log "install into $VENV failed"; exit 1; }
}

install
export CHORUS_KUBE_VERSIONS="${CHORUS_KUBE_VERSIONS:-1.27.0 1.37.0}"
# The script comes on stdin; the arguments go to it.
exec "$VENV/bin/python" - "$@" <<'PY'
import argparse
import json
import os
import sys

import helm_python as helm
import kubernetes_validate
import yaml


def fail(msg):
    print(f"helm-render.sh: {msg}", file=sys.stderr)
    sys.exit(1)


def merge(base, over):
    """Helm's coalescing of values files: maps merge key by key, anything
    else replaces, and null deletes the key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


p = argparse.ArgumentParser(prog="helm-render.sh")
p.add_argument("chart")
p.add_argument("-f", "--values", action="append", default=[])
p.add_argument("--set", action="append", default=[])
p.add_argument("--set-file", action="append", default=[])
p.add_argument("--name", default="chorus")
p.add_argument("--namespace", default="default")
p.add_argument("--revision", type=int, default=1)
p.add_argument("--lint", action="store_true")
p.add_argument("--validate", action="store_true")
p.add_argument("--json", action="store_true")
a = p.parse_args()

values = {}
for path in a.values:
    try:
        with open(path) as f:
            values = merge(values, yaml.safe_load(f) or {})
    except (OSError, yaml.YAMLError) as e:
        fail(f"{path}: {e}")
try:
    for expr in a.set:
        values = merge(values, helm.parse_set_string(expr))
    for expr in a.set_file:
        values = merge(values, helm.parse_set_file(expr))
except helm.HelmError as e:
    fail(f"bad --set/--set-file: {e}")

if a.lint:
    report = helm.lint(a.chart, values, strict=True, namespace=a.namespace)
    problems = [f"{m.get('path')}: {m.get('error')}" for m in report.get("messages", [])
                if m.get("severity", 0) >= 2] + list(report.get("errors") or [])
    if problems:
        # The library reports some findings twice (message and error).
        fail("helm lint --strict:\n  " + "\n  ".join(dict.fromkeys(problems)))

try:
    with helm.Chart.load(a.chart) as chart:
        rendered = chart.render(values, name=a.name, namespace=a.namespace,
                                revision=a.revision, is_install=True)
except helm.HelmError as e:
    fail(f"render failed: {e}")

# Like `helm template`: every non-empty document of every template, in
# template order; NOTES.txt is text for humans, not an object.
objects = []
for source in sorted(rendered):
    if source.endswith("NOTES.txt"):
        continue
    try:
        docs = list(yaml.safe_load_all(rendered[source]))
    except yaml.YAMLError as e:
        fail(f"{source} is not YAML: {e}\n{rendered[source]}")
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            fail(f"{source}: a document that is not a Kubernetes object: {doc!r}")
        objects.append({"source": source, "object": doc})

if a.validate:
    versions = os.environ["CHORUS_KUBE_VERSIONS"].split()
    errors = []
    for o in objects:
        obj = o["object"]
        what = f"{o['source']}: {obj['kind']} {obj.get('metadata', {}).get('name')}"
        for v in versions:
            try:
                kubernetes_validate.validate(obj, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(x) for x in e.path)
                errors.append(f"{what} (Kubernetes {v}): {path}: {e.message}")
            except (kubernetes_validate.SchemaNotFoundError,
                    kubernetes_validate.InvalidSchemaError) as e:
                errors.append(f"{what} (Kubernetes {v}): {e.message}")
    if errors:
        fail("schema validation failed:\n  " + "\n  ".join(errors))
    print(f"helm-render.sh: {len(objects)} objects valid for Kubernetes {', '.join(versions)}",
          file=sys.stderr)



def block_strings(dumper, s):
    """Multi-line strings (plans, scripts) as `|` blocks, as written."""
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


if a.json:
    json.dump(objects, sys.stdout, indent=1)
    print()
else:
    yaml.SafeDumper.add_representer(str, block_strings)
    for o in objects:
        print(f"---\n# Source: {o['source']}")
        print(yaml.safe_dump(o["object"], sort_keys=False), end="")
PY
