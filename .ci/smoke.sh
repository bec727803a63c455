#!/usr/bin/env bash
# Starts the suite as a newcomer would (`cargo run`, default ports, SQLite under ./data of a
# scratch directory) and checks it with real grpcurl: reflection through the gateway lists all
# five APIs, and every port answers SERVING. Then Ctrl-C must stop it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/tools.sh
ensure_grpcurl

cargo build --workspace --locked --quiet
target_dir="${CARGO_TARGET_DIR:-$(pwd)/target}"
scratch=$(mktemp -d)
log="$scratch/suite.log"
(cd "$scratch" && exec "$target_dir/debug/esim-suite") >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT

fail() { echo "smoke: $*"; echo "--- suite log"; cat "$log"; exit 1; }

for _ in $(seq 1 60); do
  grpcurl -plaintext -max-time 1 127.0.0.1:50051 grpc.health.v1.Health/Check >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || fail "the suite exited early"
  sleep 0.5
done

services=$(grpcurl -plaintext 127.0.0.1:50051 list) || fail "grpcurl list failed"
echo "$services"
for api in esim.catalog.v1.CatalogService esim.ordering.v1.OrderingService \
           esim.provisioning.v1.ProvisioningService esim.usage.v1.UsageService \
           esim.gateway.v1.GatewayService; do
  grep -qx "$api" <<<"$services" || fail "$api is not listed by the gateway"
done

for port in 50051 50052 50053 50054 50055; do
  status=$(grpcurl -plaintext 127.0.0.1:$port grpc.health.v1.Health/Check) || fail "health on :$port"
  grep -q '"status": "SERVING"' <<<"$status" || fail "port $port is not SERVING: $status"
  echo "port $port: SERVING"
done

grpcurl -plaintext 127.0.0.1:50051 describe esim.catalog.v1.CatalogService >/dev/null \
  || fail "describe through the gateway"

# A short traveller journey: the catalogue synced from the sandbox answers for Japan.
run=$(grpcurl -plaintext -d '{"request_id":"smoke-sync"}' 127.0.0.1:50051 esim.catalog.v1.CatalogService/SyncCatalog) \
  || fail "SyncCatalog"
grep -q '"outcome": "SYNC_OUTCOME_SUCCEEDED"' <<<"$run" || fail "sync did not succeed: $run"
products=$(grpcurl -plaintext -d '{"country_code":"JP","order_by":"retail_price","page_size":5}' \
  127.0.0.1:50051 esim.catalog.v1.CatalogService/ListProducts) || fail "ListProducts"
grep -q '"name": "products/' <<<"$products" || fail "no products for JP: $products"
bad=$(grpcurl -plaintext -d '{"country_code":"XX"}' 127.0.0.1:50051 esim.catalog.v1.CatalogService/ListProducts 2>&1) \
  && fail "an unknown country was accepted"
grep -q "InvalidArgument" <<<"$bad" || fail "unknown country: expected InvalidArgument, got: $bad"
echo "catalog: $(grep -c '"name": "products/' <<<"$products") products for JP through the gateway"

kill -INT "$pid"
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$pid" 2>/dev/null && fail "the suite did not stop on Ctrl-C"
wait "$pid" || fail "the suite exited with an error after Ctrl-C"
[ -f "$scratch/data/catalog.db" ] || fail "no SQLite file under ./data"
echo "smoke: OK"
