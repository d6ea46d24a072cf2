#!/usr/bin/env bash
# Builds Gatehouse's fuzz targets (fuzz/, cargo-fuzz + libFuzzer) and runs each for a while, then prints one
# summary table: target, executions, exec/s, crashes, artifact.
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--sanitizer address|none] [TARGET...]
#
#   --seconds N    how long each target runs (default 30)
#   --jobs J       libFuzzer processes per target, sharing its corpus; executions are summed (default 1)
#   --sanitizer S  `address` (AddressSanitizer, default) or `none`
#   TARGET...      targets to run (default: all; `cargo fuzz list` names them)
#
# The build is cargo-fuzz's default: release with debug assertions and overflow checks, plus the sanitizer.
# There is one stable toolchain here and cargo-fuzz needs `-Z` flags, so this runs with RUSTC_BOOTSTRAP=1.
# cargo-fuzz is installed (`cargo install cargo-fuzz --locked`) when missing.
#
# GATEHOUSE_FUZZ_TARGET_DIR=DIR builds in DIR instead of fuzz/target.
#
# Inputs: each target starts from the committed seeds (fuzz/seeds/<target>/) and its own growing corpus
# (fuzz/corpus/<target>/, git-ignored). A crash (panic, failed assertion, sanitizer report, timeout, OOM)
# writes the input to fuzz/artifacts/<target>/ and the log to fuzz/logs/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# The script exits non-zero when any target crashed, naming each artifact.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo_root
readonly fuzz_dir="$repo_root/fuzz"
readonly triple="x86_64-unknown-linux-gnu"
# Build directory: GATEHOUSE_FUZZ_TARGET_DIR, else fuzz/target, where `cargo fuzz run` (reproducing a crash)
# looks. The AddressSanitizer build goes there, the other one beside it, so switching sanitizers rebuilds
# nothing. A directory kept outside the clone (CI sets one) keeps every compiled dependency across clones.
target_root="${GATEHOUSE_FUZZ_TARGET_DIR:-$fuzz_dir/target}"
target_dir=""

seconds=30
jobs=1
sanitizer=address
targets=()

main() {
    while (($#)); do
        case "$1" in
            --seconds) seconds="$(number "$1" "${2:-}")"; shift 2 ;;
            --jobs) jobs="$(number "$1" "${2:-}")"; shift 2 ;;
            --sanitizer)
                sanitizer="${2:-}"
                [[ $sanitizer == address || $sanitizer == none ]] || die "--sanitizer takes address or none"
                shift 2
                ;;
            -h | --help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            -*) die "unknown option: $1 (try --help)" ;;
            *) targets+=("$1"); shift ;;
        esac
    done

    ensure_cargo_fuzz
    export RUSTC_BOOTSTRAP=1
    target_dir="$target_root"
    [[ $sanitizer == address ]] || target_dir="$target_root/sanitizer-$sanitizer"
    cd "$fuzz_dir"

    local known
    known="$(cargo fuzz list)"
    if ((${#targets[@]} == 0)); then
        mapfile -t targets <<<"$known"
    fi
    for target in "${targets[@]}"; do
        grep -qx "$target" <<<"$known" || die "unknown target: $target (known: $(tr '\n' ' ' <<<"$known"))"
    done

    build
    local results=()
    for target in "${targets[@]}"; do
        results+=("$(run_target "$target")")
    done
    summary "${results[@]}"
}

number() {
    [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 takes a positive whole number"
    printf '%s' "$2"
}

ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        say "cargo-fuzz is missing: installing it (cargo install cargo-fuzz --locked)"
        cargo install cargo-fuzz --locked
    fi
}

build() {
    local started=$SECONDS
    # All targets in one cargo invocation (they share every dependency); one target alone when only it runs.
    if ((${#targets[@]} == 1)); then
        say "build: cargo fuzz build --sanitizer $sanitizer --target-dir $target_dir ${targets[0]}"
        cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir" "${targets[0]}"
    else
        say "build: cargo fuzz build --sanitizer $sanitizer --target-dir $target_dir"
        cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"
    fi
    say "built in $((SECONDS - started)) s"
}

# Longest input per target: a whole cookie-mode chunk set, a logout token up to the gateway's bound, the
# demo configuration; libFuzzer's own default (4096, or the largest seed) elsewhere.
max_len() {
    case "$1" in
        session_cookie | logout_token) echo 16384 ;;
        config) echo 32768 ;;
        *) echo 0 ;;
    esac
}

# Runs one target for `seconds` with `jobs` processes; prints "target executions exec/s crashes artifacts".
run_target() {
    local target="$1"
    local binary="$target_dir/$triple/release/$target"
    local corpus="$fuzz_dir/corpus/$target" seeds="$fuzz_dir/seeds/$target"
    local artifacts="$fuzz_dir/artifacts/$target" logs="$fuzz_dir/logs"
    mkdir -p "$corpus" "$seeds" "$artifacts" "$logs"
    [[ -x $binary ]] || die "$binary was not built"
    say "run: $target for $seconds s ($jobs job(s))" >&2

    local pids=() job
    for ((job = 0; job < jobs; job++)); do
        # The first directory is the corpus libFuzzer adds to; the seeds are only read.
        "$binary" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
            -max_len="$(max_len "$target")" -seed="$((job + 1))" -artifact_prefix="$artifacts/" \
            "$corpus" "$seeds" >"$logs/$target-$job.log" 2>&1 &
        pids+=("$!")
    done
    local failed=0
    for job in "${!pids[@]}"; do
        wait "${pids[$job]}" || failed=$((failed + 1))
    done

    local executions=0 rate=0 crashes=0 found=() value path
    for ((job = 0; job < jobs; job++)); do
        local log="$logs/$target-$job.log"
        value="$(stat_of number_of_executed_units "$log")"
        executions=$((executions + value))
        value="$(stat_of average_exec_per_sec "$log")"
        rate=$((rate + value))
        while read -r path; do
            [[ -n $path ]] && found+=("$path")
        done < <(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
    done
    crashes=${#found[@]}
    # A process that failed without writing an input (e.g. it could not start) still fails the run.
    if ((failed > crashes)); then
        crashes=$failed
        found+=("(no input written: see $logs/$target-*.log)")
    fi
    if ((crashes > 0)); then
        say "$target crashed: $(printf '%s ' "${found[@]}")" >&2
        tail -n 40 "$logs/$target-0.log" >&2
    fi
    local artifact_list="-"
    ((crashes > 0)) && artifact_list="$(IFS=,; printf '%s' "${found[*]}")"
    printf '%s %s %s %s %s\n' "$target" "$executions" "$rate" "$crashes" "$artifact_list"
}

# The value of libFuzzer's final `stat::NAME:` line in a log, 0 when absent.
stat_of() {
    local value
    value="$(sed -n "s/^stat::$1:[[:space:]]*\([0-9]*\).*/\1/p" "$2" | tail -n 1)"
    printf '%s' "${value:-0}"
}

summary() {
    local total_executions=0 total_crashes=0 line target executions rate crashes artifacts
    printf '\n==> fuzz summary: %s s per target, %s job(s) per target, sanitizer %s\n' "$seconds" "$jobs" "$sanitizer"
    printf '%-16s %14s %10s %8s  %s\n' target executions exec/s crashes artifact
    for line in "$@"; do
        read -r target executions rate crashes artifacts <<<"$line"
        printf '%-16s %14s %10s %8s  %s\n' "$target" "$executions" "$rate" "$crashes" "$artifacts"
        total_executions=$((total_executions + executions))
        total_crashes=$((total_crashes + crashes))
    done
    printf '%-16s %14s %10s %8s\n' total "$total_executions" - "$total_crashes"
    if ((total_crashes > 0)); then
        printf '\n==> FAILED: %s crash(es); the inputs are under fuzz/artifacts/\n' "$total_crashes" >&2
        exit 1
    fi
    printf '\n==> no crash\n'
}

say() { printf '==> %s\n' "$*"; }
die() { printf 'fuzz.sh: %s\n' "$*" >&2; exit 2; }

main "$@"
