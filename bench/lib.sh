# Helpers the bench scripts share; source it after `cd` to the repository root.

# wait_healthy URL [PID LOG]: waits up to 120 s for URL/health to answer 200. With PID, stops early
# when that process (the server) has exited, printing LOG (its output) to show why.
wait_healthy() {
  local url=$1 pid=${2:-} log=${3:-}
  for _ in $(seq 1 600); do
    curl -sf "$url/health" >/dev/null 2>&1 && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "the server for $url exited before it was healthy" >&2
      [ -n "$log" ] && cat "$log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "server at $url did not become healthy in 120 s" >&2
  return 1
}
