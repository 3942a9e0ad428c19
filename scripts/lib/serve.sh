# Sourced by the scripts that load one served target from several apibench processes.
#
#   start_serve WORK_DIR CMD...   runs CMD (an `apibench serve ...` command line, optionally
#                                 behind taskset) with its URL file, log and stdin in WORK_DIR;
#                                 returns when the target answers, with its URL in $url
#   stop_serve                    stops it the clean way: closing its stdin makes `apibench
#                                 serve` stop the target and remove the database copy and
#                                 PostgreSQL; SIGTERM only if it is still there 30 s later
serve_pid=
url=

start_serve() {
  local work=$1
  shift
  mkfifo "$work/hold"
  "$@" --url-file "$work/url" --log "$work/target.log" --exit-with-stdin < "$work/hold" &
  serve_pid=$!
  exec 9> "$work/hold"
  for _ in $(seq 1 120); do
    [ -s "$work/url" ] && break
    kill -0 "$serve_pid" 2>/dev/null || { echo "apibench serve failed" >&2; return 3; }
    sleep 0.5
  done
  [ -s "$work/url" ] || { echo "the target did not come up in 60 s" >&2; return 3; }
  url=$(cat "$work/url")
}

stop_serve() {
  [ -n "$serve_pid" ] || return 0
  exec 9>&- 2>/dev/null
  for _ in $(seq 1 60); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.5; done
  kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  serve_pid=
}
