#!/usr/bin/env bash
# test_monitor.sh DISTILL PYTHON3 - the metrics of issue 6 on real runs
# under mpirun: the metrics.jsonl schema, a live scrape of the Prometheus
# endpoint that finds every group with counters rising, `distill top` on a
# run folder and a URL, `distill plot`. Prints "ok/FAIL name" per case and
# "N passed, N failed". Network: 127.0.0.1 only; every wait is bounded.
set -u
distill=$1
python=$2
here=tests/monitor
work=$(mktemp -d /tmp/dd_monitor.XXXXXX)
supervisor=""
cleanup() { [ -n "$supervisor" ] && kill "$supervisor" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
. tests/script_harness.sh

# 1. a short run: every line of metrics.jsonl has the documented fields and types
log=$work/short.log
if timeout 120 "$distill" run $here/configs/every2.yaml --run-dir "$work/short" > "$log" 2>&1 &&
   out=$("$python" $here/check_jsonl.py "$work/short/metrics.jsonl" teacher s 2>&1) &&
   [ "$(wc -l < "$work/short/metrics.jsonl")" -eq 40 ]; then
    pass "metrics_jsonl_follows_the_schema ($out)"
else
    fail "metrics_jsonl_follows_the_schema" "${out:-run failed}; $(wc -l < "$work/short/metrics.jsonl" 2>&1) lines" "$log"
fi

# 2. `distill top RUN_DIR --once` prints a row per group
out=$("$distill" top "$work/short" --once 2>&1)
if echo "$out" | grep -q "^teacher .* 40/40 " && echo "$out" | grep -q "^s  .* 40/40 "; then
    pass "top_run_dir_prints_a_row_per_group"
else
    fail "top_run_dir_prints_a_row_per_group" "$out" "$log"
fi

# 3. `distill plot` writes an SVG with one polyline per group; the run wrote one too
check_svg='import sys, xml.etree.ElementTree as E
lines = [p.get("data-group") for p in E.parse(sys.argv[1]).getroot().iter("{http://www.w3.org/2000/svg}polyline")]
assert sorted(lines) == ["s", "teacher"], lines
print(len(lines), "polylines")'
if "$distill" plot "$work/short" "$work/plot.svg" > "$log" 2>&1 && out=$("$python" -c "$check_svg" "$work/plot.svg" 2>&1) &&
   "$python" -c "$check_svg" "$work/short/throughput.svg" > /dev/null 2>&1; then
    pass "plot_writes_a_polyline_per_group ($out)"
else
    fail "plot_writes_a_polyline_per_group" "${out:-plot failed}" "$log"
fi

# 4. the live endpoint during a run: every group's series, counters rising
port=""
for candidate in $(seq $((20000 + $$ % 20000)) $((20000 + $$ % 20000 + 50))); do
    if ! (exec 3<>/dev/tcp/127.0.0.1/$candidate) 2>/dev/null; then port=$candidate; break; fi
done
scrape() {
    exec 3<>/dev/tcp/127.0.0.1/$port || return 1
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    timeout 5 cat <&3
    exec 3<&-
}
value() { sed -n "s/^$1{group=\"$2\"} //p" | tr -d '\r'; }
printf 'include: %s/%s/configs/long.yaml\nmonitor: {every: 2, port: %s}\n' "$PWD" $here "$port" > "$work/live.yaml"
log=$work/live.log
DD_INJECT_HANG_AT=5990 "$distill" run "$work/live.yaml" --run-dir "$work/live" > "$log" 2>&1 &
supervisor=$!
first=""
for _ in $(seq 1 300); do
    first=$(scrape 2>/dev/null)
    echo "$first" | grep -q 'distill_images_total{group="s"} [1-9]' &&
        echo "$first" | grep -q 'distill_images_total{group="teacher"} [1-9]' && break
    sleep 0.1
done
sleep 1
second=$(scrape 2>/dev/null)
top=$("$distill" top "http://127.0.0.1:$port/metrics" --once 2>&1)
victim=$(pgrep -P "$(pgrep -P $supervisor | head -n 1)" | tail -n 1)
[ -n "$victim" ] && kill -9 "$victim"
for _ in $(seq 1 100); do kill -0 $supervisor 2>/dev/null || break; sleep 0.1; done
kill $supervisor 2>/dev/null
wait $supervisor 2>/dev/null
supervisor=""
ok=1
why=""
for group in teacher s; do
    a=$(echo "$first" | value distill_images_total $group)
    b=$(echo "$second" | value distill_images_total $group)
    c=$(echo "$second" | value distill_busy_seconds_total $group)
    if [ -z "$a" ] || [ -z "$b" ] || [ -z "$c" ] || ! "$python" -c "import sys; sys.exit(not $b > $a)"; then
        ok=0; why="$why group $group: images_total '$a' then '$b', busy '$c';"
    fi
done
for name in "# TYPE distill_images_total counter" "# TYPE distill_images_per_second gauge" \
            'distill_loss{group="s",term="total"}' 'distill_bytes_received_total{group="s"}' \
            'distill_bytes_sent_total{group="teacher"}' 'distill_eta_seconds{group="s"}'; do
    echo "$second" | grep -qF "$name" || { ok=0; why="$why no '$name';"; }
done
if [ -n "$port" ] && [ $ok -eq 1 ]; then
    pass "live_endpoint_serves_every_group_with_rising_counters (port $port)"
else
    fail "live_endpoint_serves_every_group_with_rising_counters" "port '$port';$why" "$log"
fi
if echo "$top" | grep -q "^teacher " && echo "$top" | grep -q "^s "; then
    pass "top_url_prints_a_row_per_group"
else
    fail "top_url_prints_a_row_per_group" "$top" "$log"
fi

finish
