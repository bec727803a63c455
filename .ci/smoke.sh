#!/usr/bin/env bash
# Starts the suite as a newcomer would (`cargo run`, default ports, SQLite under ./data of a
# scratch directory) and checks it with real grpcurl: reflection through the gateway lists all
# five APIs, every port answers SERVING, a backend port refuses a direct call, the gateway
# refuses a call without an API key, and a short journey works with the key `cargo run` left in
# ./data/dev-api-key. Then Ctrl-C must stop it cleanly.
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
  status=""
  # The gateway turns SERVING once its first backend probe succeeds.
  for _ in $(seq 1 20); do
    status=$(grpcurl -plaintext 127.0.0.1:$port grpc.health.v1.Health/Check) || fail "health on :$port"
    grep -q '"status": "SERVING"' <<<"$status" && break
    sleep 0.5
  done
  grep -q '"status": "SERVING"' <<<"$status" || fail "port $port is not SERVING: $status"
  echo "port $port: SERVING"
done

key_file="$scratch/data/dev-api-key"
[ -s "$key_file" ] || fail "cargo run left no API key in data/dev-api-key"
[ "$(stat -c %a "$key_file")" = 600 ] || fail "data/dev-api-key is readable by others"
grep -qF "$(cat "$key_file")" "$log" && fail "the API key reached the log"
auth="authorization: Bearer $(cat "$key_file")"
refused=$(grpcurl -plaintext -d '{}' 127.0.0.1:50051 esim.catalog.v1.CatalogService/ListCountries 2>&1) \
  && fail "a call without an API key was answered"
grep -q "Unauthenticated" <<<"$refused" || fail "no key: expected Unauthenticated, got: $refused"
refused=$(grpcurl -plaintext -d '{}' 127.0.0.1:50052 esim.catalog.v1.CatalogService/ListCountries 2>&1) \
  && fail "the catalog port answered a caller without the internal credential"
grep -q "Unauthenticated" <<<"$refused" || fail "direct backend call: expected Unauthenticated, got: $refused"
echo "auth: no key -> Unauthenticated; direct backend call -> Unauthenticated"

grpcurl -plaintext 127.0.0.1:50051 describe esim.catalog.v1.CatalogService >/dev/null \
  || fail "describe through the gateway"

# A short traveller journey: the catalogue synced from the sandbox answers for Japan.
run=$(grpcurl -plaintext -H "$auth" -d '{"request_id":"smoke-sync"}' 127.0.0.1:50051 esim.catalog.v1.CatalogService/SyncCatalog) \
  || fail "SyncCatalog"
grep -q '"outcome": "SYNC_OUTCOME_SUCCEEDED"' <<<"$run" || fail "sync did not succeed: $run"
products=$(grpcurl -plaintext -H "$auth" -d '{"country_code":"JP","order_by":"retail_price","page_size":5}' \
  127.0.0.1:50051 esim.catalog.v1.CatalogService/ListProducts) || fail "ListProducts"
grep -q '"name": "products/' <<<"$products" || fail "no products for JP: $products"
bad=$(grpcurl -plaintext -H "$auth" -d '{"country_code":"XX"}' 127.0.0.1:50051 esim.catalog.v1.CatalogService/ListProducts 2>&1) \
  && fail "an unknown country was accepted"
grep -q "InvalidArgument" <<<"$bad" || fail "unknown country: expected InvalidArgument, got: $bad"
echo "catalog: $(grep -c '"name": "products/' <<<"$products") products for JP through the gateway"

# ... buys the cheapest MP plan, watches the order become ACTIVE, receives the eSIM with its QR
# code and install links, and sees its usage.
product=$(grep -o '"name": "products/mp-[^"]*"' <<<"$products" | head -1 | cut -d'"' -f4)
[ -n "$product" ] || fail "no MP product for JP: $products"
order=$(grpcurl -plaintext -H "$auth" -d "{\"request_id\":\"smoke-order-1\",\"order\":{\"product\":\"$product\",\"cycle_count\":1,\"customer_reference\":\"smoke\",\"customer_email\":\"smoke@example.com\"}}" \
  127.0.0.1:50051 esim.ordering.v1.OrderingService/CreateOrder) || fail "CreateOrder"
order_name=$(grep -o '"name": "orders/[^"]*"' <<<"$order" | head -1 | cut -d'"' -f4)
for _ in $(seq 1 40); do
  order=$(grpcurl -plaintext -H "$auth" -d "{\"name\":\"$order_name\"}" 127.0.0.1:50051 esim.ordering.v1.OrderingService/GetOrder) \
    || fail "GetOrder"
  grep -q '"state": "ORDER_STATE_ACTIVE"' <<<"$order" && break
  sleep 0.5
done
grep -q '"state": "ORDER_STATE_ACTIVE"' <<<"$order" || fail "order not ACTIVE: $order"
esim=$(grep -o '"esim": "esims/[^"]*"' <<<"$order" | cut -d'"' -f4)
delivery=$(grpcurl -plaintext -H "$auth" -d "{\"name\":\"$esim\"}" 127.0.0.1:50051 esim.provisioning.v1.ProvisioningService/DeliverEsim) \
  || fail "DeliverEsim"
grep -q '"activationCode": "LPA:1\$' <<<"$delivery" || fail "no activation code in the hand-over"
grep -q '"qrCodePng": "iVBOR' <<<"$delivery" || fail "no PNG QR code in the hand-over"
usage=$(grpcurl -plaintext -H "$auth" -d "{\"name\":\"$esim/usage\"}" 127.0.0.1:50051 esim.usage.v1.UsageService/GetUsage) \
  || fail "GetUsage"
grep -q '"totalBytes"' <<<"$usage" || fail "no usage: $usage"
matching_id=$(grep -o '"matchingId": "[^"]*"' <<<"$delivery" | cut -d'"' -f4)
[ -n "$matching_id" ] && grep -qF "$matching_id" "$log" && fail "an activation code reached the log"
echo "journey: $order_name ACTIVE, $esim delivered with its QR code, usage known"

kill -INT "$pid"
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$pid" 2>/dev/null && fail "the suite did not stop on Ctrl-C"
wait "$pid" || fail "the suite exited with an error after Ctrl-C"
[ -f "$scratch/data/catalog.db" ] || fail "no SQLite file under ./data"
echo "smoke: OK"
