#!/usr/bin/env bash
# CI: the libFuzzer targets of csrc/fuzz, built with clang, ASan and UBSan,
# each run for a bounded time from the seed corpus (csrc/fuzz/make_corpus.py,
# which includes every past crasher). Exits non-zero on any finding: a crash,
# a sanitizer report, a broken invariant, a leak, a timeout or running out of
# memory. Crashing inputs are kept in build/fuzz/artifacts/ and printed in hex.
#
#   PTTH_FUZZ_SECONDS  seconds per target (default 45; fuzz_restore: 20, its state space is small)
#   PTTH_FUZZ_TARGETS  which targets (default: fuzz_loads fuzz_stream fuzz_inflate fuzz_aggregate
#                      fuzz_restore)
#   PTTH_FUZZ_PY_SECONDS  seconds per atheris target in fuzz/ (default 20)
#
# Needs root for apt-get only when clang or its libFuzzer runtime is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${PTTH_FUZZ_SECONDS:-45}
targets=${PTTH_FUZZ_TARGETS:-fuzz_loads fuzz_stream fuzz_inflate fuzz_aggregate fuzz_restore}
build=build/fuzz
start=$SECONDS

if ! grep -q 'csrc/fuzz/fuzz.cmake' CMakeLists.txt; then
  echo "CMakeLists.txt does not include csrc/fuzz/fuzz.cmake; add at its end:" >&2
  echo "  include(csrc/fuzz/fuzz.cmake)" >&2
  exit 2
fi

probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
has_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 || return 1
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
    > "$probe_dir/probe.cpp"
  clang++ -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" \
    >/dev/null 2>&1
}

echo "== clang with libFuzzer"
if ! has_libfuzzer; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq clang >/dev/null
  if ! has_libfuzzer; then
    # Newer Debian ships the sanitizer and fuzzer runtimes separately.
    major=$(clang++ -dumpversion | cut -d. -f1)
    apt-get install -y -qq "libclang-rt-${major}-dev" >/dev/null
  fi
  has_libfuzzer || { echo "clang++ cannot link -fsanitize=fuzzer" >&2; exit 2; }
fi
clang++ --version | head -n 1

echo "== build"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPTTH_BUILD_FUZZERS=ON -DPTTH_BUILD_TESTS=OFF \
  -DPTTH_BUILD_PYTHON=OFF >/dev/null
cmake --build "$build" --target ptth_fuzzers -j 2

echo "== seed corpus"
python=$(command -v python3 || command -v python)
rm -rf "$build/seeds"
"$python" csrc/fuzz/make_corpus.py "$build/seeds"
rm -rf "$build/artifacts"  # what a run finds is printed below, in hex
mkdir -p "$build/artifacts" "$build/logs"
echo "build and seeds: $((SECONDS - start)) s"

failed=()
for t in $targets; do
  t_seconds=$seconds
  [ "$t" = fuzz_restore ] && [ -z "${PTTH_FUZZ_SECONDS:-}" ] && t_seconds=20
  echo "== $t (${t_seconds} s)"
  mkdir -p "$build/corpus/$t"
  log="$build/logs/$t.log"
  t0=$SECONDS
  # The first directory collects new inputs; the seeds are replayed first.
  if "$build/$t" -max_total_time="$t_seconds" -rss_limit_mb=2048 -timeout=25 \
       -dict=csrc/fuzz/ptth.dict -print_final_stats=1 \
       -artifact_prefix="$build/artifacts/$t-" "$build/corpus/$t" "$build/seeds/$t" \
       >"$log" 2>&1; then
    runs=$(grep -Eo 'number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || true)
    echo "$t: clean, $runs runs in $((SECONDS - t0)) s"
  else
    failed+=("$t")
    echo "$t: FINDING (log: $log)"
    grep -v -E '^#[0-9]+ |^"|NEW_FUNC' "$log" | tail -n 60
    for f in "$build/artifacts/$t"-*; do
      [ -f "$f" ] || continue
      echo "input $f ($(wc -c <"$f") bytes), hex:"
      od -An -v -tx1 "$f" | tr -d ' \n' | fold -w 120
      echo
    done
  fi
done

# The Python parsers (ptth.convert's safetensors and .npz readers, ptth serve's
# request parsing) under atheris, libFuzzer for Python: only the documented
# errors may leave them. PTTH_FUZZ_PY_SECONDS per target (default 20).
py_seconds=${PTTH_FUZZ_PY_SECONDS:-20}
py_targets=${PTTH_FUZZ_PY_TARGETS:-fuzz_formats fuzz_server_parsing}
if ! "$python" -c "import ptth.convert, ptth.server" 2>/dev/null; then
  echo "ptth with its extras does not import with $python: install it first" \
    "(python -m pip install '.[test]')" >&2
  exit 2
fi
"$python" -m pip install -q --disable-pip-version-check "atheris==3.0.0"
for t in $py_targets; do
  echo "== $t (atheris, ${py_seconds} s)"
  rm -rf "$build/py/$t/seeds" && mkdir -p "$build/py/$t/seeds" "$build/py/$t/corpus"
  "$python" "fuzz/$t.py" --make-seeds "$build/py/$t/seeds"
  log="$build/logs/$t.log"
  t0=$SECONDS
  if "$python" "fuzz/$t.py" -max_total_time="$py_seconds" -rss_limit_mb=2048 -timeout=25 \
       -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
       "$build/py/$t/corpus" "$build/py/$t/seeds" >"$log" 2>&1; then
    runs=$(grep -Eo 'number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || true)
    echo "$t: clean, $runs runs in $((SECONDS - t0)) s"
  else
    failed+=("$t")
    echo "$t: FINDING (log: $log)"
    grep -v -E '^#[0-9]+ |^INFO: Instrumenting|^INFO:|^"' "$log" | tail -n 60
    for f in "$build/artifacts/$t"-*; do
      [ -f "$f" ] || continue
      echo "input $f ($(wc -c <"$f") bytes), hex:"
      od -An -v -tx1 "$f" | tr -d ' \n' | fold -w 120
      echo
    done
  fi
done

echo "== fuzzing took $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "findings in: ${failed[*]}" >&2
  exit 1
fi
echo "no findings"
