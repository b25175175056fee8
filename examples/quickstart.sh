#!/usr/bin/env bash
# Build and start the proxy on examples/liter-llm-proxy.toml.
#
# Without OPENAI_API_KEY, the repo's mock upstream is started too and the
# example's models point at it, so the proxy answers real requests on a machine
# with no API keys and no internet. Extra arguments go to `liter-llm api`
# (e.g. --port 4100, --debug).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p liter-llm -p mock-upstream
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release"

export LITER_LLM_MASTER_KEY="${LITER_LLM_MASTER_KEY:-sk-quickstart-master}"

if [ -z "${OPENAI_API_KEY:-}" ]; then
  mock_port="${MOCK_PORT:-4010}"
  mock_log=$(mktemp)
  "$bin/mock-upstream" --port "$mock_port" --api-key sk-mock-upstream --chunks 12 --chunk-interval-ms 40 >"$mock_log" 2>&1 &
  mock_pid=$!
  trap 'kill "$mock_pid" 2>/dev/null || true; rm -f "$mock_log"' EXIT
  for _ in $(seq 1 100); do
    grep -q "listening" "$mock_log" && break
    kill -0 "$mock_pid" 2>/dev/null || { cat "$mock_log" >&2; exit 1; }
    sleep 0.05
  done
  export OPENAI_API_KEY=sk-mock-upstream
  export OPENAI_BASE_URL="http://127.0.0.1:$mock_port/v1"
  echo "OPENAI_API_KEY is not set: the models answer from the mock upstream at $OPENAI_BASE_URL" >&2
fi

echo "master key: $LITER_LLM_MASTER_KEY" >&2
"$bin/liter-llm" api --config examples/liter-llm-proxy.toml "$@" &
proxy_pid=$!
trap 'kill "$proxy_pid" 2>/dev/null || true; kill "${mock_pid:-}" 2>/dev/null || true; rm -f "${mock_log:-}"' EXIT
forward() { kill -TERM "$proxy_pid" 2>/dev/null || true; }
trap forward INT TERM
wait "$proxy_pid"
