#!/usr/bin/env bash
# Runs every fuzz target (the extractors', `h1`: the proxy's HTTP/1 codec, and `h1_connection`: client bytes
# through the native engine on loopback) for a bounded time and prints, per target, the executions done, the
# coverage reached (libFuzzer's `cov:`) and whether libFuzzer found a crash.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET ...]   (default 60 seconds, every target)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Seeds come from tests/fixtures/formats; h1_connection's from the requests and responses written in
# tests/proxy_conformance.rs. A crash leaves its input under
# fuzz/artifacts/TARGET/; fix it and keep the input as a regression test.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift $(($# > 0 ? 1 : 0))
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(json_path xml x12 edifact decompress form h1 h1_connection)
fi
fixtures=../tests/fixtures/formats
mkdir -p logs
status=0

# An h1_connection input: a selector byte (listener, upstream closing), the response's length, the
# response, the client's bytes; the two strings are read as printf %b escapes.
connection_seed() { # FILE SELECTOR RESPONSE CLIENT
    local response
    response=$(mktemp)
    printf '%b' "$3" >"$response"
    if [ "$(wc -c <"$response")" -gt 255 ]; then rm -f "$response"; return; fi
    {
        printf "\\$(printf %03o "$2")"
        printf "\\$(printf %03o "$(wc -c <"$response")")"
        cat "$response"
        printf '%b' "$4"
    } >"$1"
    rm -f "$response"
}

# The string literals of tests/proxy_conformance.rs that start like a request (or a response).
literals() { # PATTERN
    grep -o "\"$1[^\"]*\"" ../tests/proxy_conformance.rs | sed 's/^"//; s/"$//' | sort -u
}

printf '%-14s %12s %8s  %s\n' target executions cov result
for target in "${targets[@]}"; do
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
        h1_connection)
            ok='HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
            get='GET /a HTTP/1.1\r\nHost: h\r\n\r\n'
            n=0
            while IFS= read -r request; do
                n=$((n + 1))
                connection_seed "$corpus/request-$n" $((n % 8)) "$ok" "$request$get"
            done < <(literals '\(GET\|POST\|HEAD\|PUT\|OPTIONS\|DELETE\|CONNECT\) ')
            while IFS= read -r response; do
                n=$((n + 1))
                connection_seed "$corpus/response-$n" $((n % 8)) "$response" "$get$get"
            done < <(literals 'HTTP/1\.[01] [0-9]')
            connection_seed "$corpus/h1" 0 "$ok" 'POST /orders HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n9;x=1\r\n{"id":"1"}\r\n0\r\nX-Sum: 1\r\n\r\n' ;;
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
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf '%-14s %12s %8s  %s\n' "$target" "${execs:-?}" "${cov:-?}" "$result"
done
exit $status
