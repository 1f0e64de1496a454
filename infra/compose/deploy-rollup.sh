#!/bin/sh
# One-shot deployment for the compose stack: deploys InferenceRollup to anvil, registers the model, bonds anvil
# account 1 as the sequencer and accounts 2 and 3 as executors, and writes the rollup address to $VERINFER_CACHE_DIR/rollup.
#
# It uses `verinfer devnet --l1-rpc` (which does exactly that set-up with anvil's development accounts), waits for
# its banner, and stops it. Skipped when that file names a contract that anvil still has (anvil keeps its state
# in the anvil-state volume).
set -eu
RPC="${VERINFER_L1_RPC:-http://anvil:8545}"
MODEL="${VERINFER_MODEL:-smollm2}"
OUT="${VERINFER_CACHE_DIR:-/var/lib/verinfer}/rollup"

rpc() {
  curl -fsS -H 'content-type: application/json' --data "$1" "$RPC"
}

for _ in $(seq 60); do
  rpc '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' >/dev/null 2>&1 && break
  sleep 1
done

if [ -s "$OUT" ]; then
  addr="$(cat "$OUT")"
  code="$(rpc "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getCode\",\"params\":[\"$addr\",\"latest\"]}" || true)"
  case "$code" in
    *'"result":"0x"'* | '') echo "deploy-rollup: $addr has no code on $RPC: deploying again" ;;
    *) echo "deploy-rollup: InferenceRollup already at $addr"; exit 0 ;;
  esac
fi

log=/tmp/devnet.log
verinfer devnet --model "$MODEL" --l1-rpc "$RPC" --executors 2 --port 0 --challenge-window "${CHALLENGE_WINDOW:-60}" \
  >"$log" 2>&1 &
pid=$!
addr=""
for _ in $(seq 600); do
  addr="$(sed -n 's/.*InferenceRollup at \(0x[0-9a-fA-F]\{40\}\).*/\1/p' "$log" | head -n 1)"
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "deploy-rollup: verinfer devnet exited" >&2; exit 1; }
  sleep 1
done
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" || true
[ -n "$addr" ] || { cat "$log"; echo "deploy-rollup: no rollup address after 600 s" >&2; exit 1; }
echo "$addr" >"$OUT"
echo "deploy-rollup: InferenceRollup at $addr (sequencer 0x7099…79C8, executors 0x3C44…93BC, 0x90F7…b906 bonded)"
