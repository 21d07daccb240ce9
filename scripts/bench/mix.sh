# shellcheck shell=bash
# The guide's load mix with wrk, sourced by scripts/bench-api and scripts/bench-pilot:
# one wrk process per endpoint class (scripts/bench/mix.lua), closed loop, with the
# connections in the mix's proportion: 50% facts reads, 40% correction writes,
# 10% enforcement (5% heartbeat writes, 5% escalation reads).
#
# The caller sets:
#   WRK          array: the wrk command (e.g. (wrk) or (docker exec HOST wrk))
#   MIX_LUA      path of mix.lua where wrk runs
#   MIX_HEADERS  path of the "Name: value" header file where wrk runs (mix.lua)
#   MIX_URL      base URL, e.g. http://127.0.0.1:18080 or https://stet-pilot-api
#   MIX_SUBJECTS seeded subjects (scripts/bench/seed.sql)
#   MIX_CONNECTIONS total connections (>= 4)
#   MIX_BACKOFF_MS  optional: wait after a 429 before the next request (mix.lua), default 0
# run_facts needs WRK, MIX_LUA, MIX_HEADERS and MIX_SUBJECTS only: it names its URL.

MIX_CLASSES=(facts corrections heartbeat escalation)

# mix_connections CLASS: connections of one class out of MIX_CONNECTIONS.
mix_connections() {
  local total=$MIX_CONNECTIONS enforcement
  enforcement=$(( total / 20 > 0 ? total / 20 : 1 ))
  case $1 in
    heartbeat | escalation) echo "$enforcement" ;;
    corrections) echo $(( total * 4 / 10 )) ;;
    facts) echo $(( total - total * 4 / 10 - 2 * enforcement )) ;;
  esac
}

mix_describe() {
  local class parts=()
  for class in "${MIX_CLASSES[@]}"; do parts+=("$(mix_connections "$class") $class"); done
  local IFS=,
  echo "$MIX_CONNECTIONS connections (${parts[*]})"
}

# run_mix SECONDS OUTDIR: the mix for SECONDS; OUTDIR/<class>.out gets each wrk's output.
run_mix() {
  local seconds=$1 out=$2 class pid failed=0 pids=()
  (( MIX_CONNECTIONS >= 4 )) || { echo "run_mix: MIX_CONNECTIONS must be at least 4" >&2; return 2; }
  mkdir -p "$out"
  for class in "${MIX_CLASSES[@]}"; do
    "${WRK[@]}" -t1 -c"$(mix_connections "$class")" -d"${seconds}s" --timeout 10s \
      -s "$MIX_LUA" "$MIX_URL" -- "$class" "$MIX_HEADERS" "$MIX_SUBJECTS" "${MIX_BACKOFF_MS:-0}" \
      >"$out/$class.out" 2>&1 &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  if (( failed )); then
    echo "run_mix: a wrk process failed:" >&2
    tail -n 5 "$out"/*.out >&2
    return 1
  fi
}

# run_facts SECONDS CONNECTIONS URL OUTFILE: GET /v1/facts alone (mix.lua's facts class),
# wrk with two threads; OUTFILE gets wrk's output, its RESULT line included.
run_facts() {
  "${WRK[@]}" -t2 -c"$2" -d"$1s" --timeout 10s -s "$MIX_LUA" "$3" -- facts "$MIX_HEADERS" "$MIX_SUBJECTS" \
    >"$4" 2>&1
}
