#!/usr/bin/env bash
# Runs every fuzz target (the extractors', and `h1`: the proxy's HTTP/1 codec) for a bounded time and prints, per
# target, the executions done and whether libFuzzer found a crash.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]   (default 60)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Seeds come from tests/fixtures/formats. A crash leaves its input under
# fuzz/artifacts/TARGET/; fix it and keep the input as a regression test.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
fixtures=../tests/fixtures/formats
mkdir -p logs
status=0
printf '%-12s %12s  %s\n' target executions result
for target in json_path xml x12 edifact decompress form h1; do
    corpus=corpus/$target
    mkdir -p "$corpus"
    case $target in
        xml) cp "$fixtures"/*.xml "$corpus"/ ;;
        x12) cp "$fixtures"/x12_* "$corpus"/ ;;
        edifact) cp "$fixtures"/edifact_* "$corpus"/ ;;
        json_path) printf '\001{"orders":[{"id":"SO-1"}],"ship-to":[{"a":"x"}],"event":"tracker.updated","result":{"tracking_code":"1Z"}}' > "$corpus"/seed.json ;;
        form) printf '\000order=SO-1&tracking=1Z+9' > "$corpus"/seed.form ;;
        decompress) printf '\006SO-1 SO-2' > "$corpus"/seed.txt ;;
        h1) printf '\000POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n' > "$corpus"/request.txt
            printf '\001HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok' > "$corpus"/response.txt ;;
    esac
    log=logs/$target.log
    if cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see fuzz/$log and fuzz/artifacts/$target/)"
        status=1
    fi
    # libFuzzer ends with "Done N runs in S second(s)".
    execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    printf '%-12s %12s  %s\n' "$target" "${execs:-?}" "$result"
done
exit $status
