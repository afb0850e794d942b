#!/usr/bin/env bash
# Side-by-side benchmark, NOT run by CI: action-cache-proxy vs nginx proxy_cache (with
# proxy_cache_lock and proxy_cache_use_stale updating) in front of the same local fake upstream
# (50 ms per call), request logging on in both. Loopback only; every run is bounded in time.
#
# Prints one table:
#   - hit throughput and p50/p99 latency on 1,000 warm keys at 64 connections (wrk, 10 s);
#   - upstream calls for 300 concurrent cold requests of one key (wrk, 300 connections, 2 s).
#
# Installs nginx, wrk, redis-server and python3 from Debian's packages when missing.
# Usage: scripts/bench-proxy.sh [seconds per throughput run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "error: need root to run: $*" >&2; exit 1
  fi
}
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  need_root apt-get update -q
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

echo "==> building action-cache-proxy (release)"
cargo build --release -q -p action-cache-proxy
PROXY_BIN="target/release/action-cache-proxy"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url [log file to show on failure]
  local code=000
  for _ in $(seq 1 200); do
    code="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$1" || true)"
    [ "$code" = 200 ] && return 0
    sleep 0.05
  done
  echo "error: $1 never answered 200 (last: $code)" >&2
  [ -n "${2:-}" ] && tail -20 "$2" >&2
  exit 1
}

# --- the fake upstream: GET /accounts/<id> after 50 ms; GET /calls/<id> says how many reads of <id> it served.
UP_PORT="$(free_port)"
cat >"$WORK/upstream.py" <<'PY'
import json, sys, threading, time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
calls, lock = Counter(), threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "calls":
            body = str(calls[parts[1]]).encode()
        else:
            with lock: calls[parts[-1]] += 1
            time.sleep(0.05)
            body = json.dumps({"id": parts[-1], "name": "Account " + parts[-1], "tier": "gold", "open_cases": 2}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 1024
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$WORK/upstream.py" "$UP_PORT" & PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/calls/x"

# --- Redis for the proxy.
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  --logfile "$WORK/redis.log" & PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# --- the proxy, twice: Redis only, and Redis with the in-process near cache.
start_proxy() { # name port near_cache(0|N)
  local near=""
  [ "$3" != 0 ] && near="near_cache = $3"
  cat >"$WORK/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
access_log = true

[redis]
url = "redis://127.0.0.1:$REDIS_PORT"
prefix = "$1"
$near

[upstreams.crm]
base_url = "http://127.0.0.1:$UP_PORT"
timeout = "5s"
max_concurrency = 512

[[routes]]
name = "account"
path = "/accounts/{id}"
upstream = "crm"
fresh = "5m"
stale = "15m"
TOML
  RUST_LOG=info "$PROXY_BIN" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 & PIDS+=($!)
  wait_http "http://127.0.0.1:$2/healthz" "$WORK/$1.log"
}
P1_PORT="$(free_port)"; start_proxy proxy "$P1_PORT" 0
P2_PORT="$(free_port)"; start_proxy proxynear "$P2_PORT" 10000

# --- nginx proxy_cache in front of the same upstream.
NG_PORT="$(free_port)"
mkdir -p "$WORK/nginx/cache" "$WORK/nginx/tmp"
# Workers run as this user, so they can write the cache under this (private) temp dir.
cat >"$WORK/nginx/nginx.conf" <<NGINX
user $(id -un) $(id -gn);
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log $WORK/nginx/access.log;
  client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
  proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=bench:16m max_size=256m inactive=20m use_temp_path=off;
  upstream crm { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NG_PORT;
    location /accounts/ {
      proxy_pass http://crm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_valid 200 5m;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 5s;
      proxy_cache_use_stale updating error timeout;
      proxy_cache_background_update on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
NGINX
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g "daemon off;" & PIDS+=($!)
wait_http "http://127.0.0.1:$NG_PORT/accounts/ready" "$WORK/nginx/error.log"

cat >"$WORK/keys.lua" <<'LUA'
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/accounts/k" .. (i % 1000))
end
LUA

# wrk prints "Requests/sec:" and, with --latency, the 50% and 99% lines.
measure() { # port -> "rps p50 p99"
  local out
  out="$(wrk -t2 -c64 -d"${DURATION}s" --latency -s "$WORK/keys.lua" "http://127.0.0.1:$1" 2>&1)"
  local rps p50 p99
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  echo "$rps $p50 $p99"
}
warm() { # port: every key once, then a short wrk pass so all 1,000 are cached
  for k in $(seq 0 999); do echo "http://127.0.0.1:$1/accounts/k$k"; done | xargs -P 32 -n 1 curl -s -o /dev/null
  wrk -t2 -c64 -d2s -s "$WORK/keys.lua" "http://127.0.0.1:$1" >/dev/null 2>&1
}
stampede() { # port key -> upstream calls for key
  wrk -t2 -c300 -d2s "http://127.0.0.1:$1/accounts/$2" >/dev/null 2>&1
  curl -s "http://127.0.0.1:$UP_PORT/calls/$2"
}

declare -A RESULT CALLS
for name in nginx proxy proxynear; do
  case "$name" in nginx) port=$NG_PORT ;; proxy) port=$P1_PORT ;; proxynear) port=$P2_PORT ;; esac
  echo "==> $name: warming 1,000 keys"
  warm "$port"
  echo "==> $name: ${DURATION}s of hits at 64 connections"
  RESULT[$name]="$(measure "$port")"
  echo "==> $name: 300 concurrent cold requests"
  CALLS[$name]="$(stampede "$port" "cold-$name")"
done

read -r ng_rps ng_p50 ng_p99 <<<"${RESULT[nginx]}"
echo
echo "| server | hit throughput (req/s) | vs nginx | p50 | p99 | upstream calls, 300 cold concurrent |"
echo "|---|---|---|---|---|---|"
for name in nginx proxy proxynear; do
  read -r rps p50 p99 <<<"${RESULT[$name]}"
  ratio="$(python3 -c "print(f'{float($rps)/float($ng_rps):.2f}×')")"
  case "$name" in
    nginx) label="nginx proxy_cache (lock, use_stale updating)" ;;
    proxy) label="action-cache-proxy, Redis" ;;
    proxynear) label="action-cache-proxy, Redis + near cache" ;;
  esac
  printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$rps" "$ratio" "$p50" "$p99" "${CALLS[$name]}"
done
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -sr), nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), redis-server $(redis-server --version | awk '{print $3}' | sed 's/^v=//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
