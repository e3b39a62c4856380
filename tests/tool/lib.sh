# Shared by the dio(1) and example tests: run by meson test with
#   DIO=<builddir>/tools/dio  EXAMPLES=<builddir>/examples  (and DIO_BACKEND)
# Each test script is one behaviour; a failed check prints what and where
# and exits 1 at the end (every check runs).
set -u
: "${DIO:?DIO must name the built dio binary}"
: "${EXAMPLES:=$(dirname "$DIO")/../examples}"
dir=$(mktemp -d "${DIO_TEST_DIR:-/dev/shm}/dio-tool-XXXXXX")
# a killed process leaves its volume's process-death log in /dev/shm
# (libdio-UUID-DEV-INO) until a mount takes it: drop those of our images
forget_plogs() {
  local f d i
  for f in "$dir"/*.img; do
    [ -e "$f" ] || continue
    d=$(printf %x "$(stat -c %d "$f")"); i=$(printf %x "$(stat -c %i "$f")")
    rm -f /dev/shm/libdio-*-"$d-$i"
  done
}
trap 'forget_plogs; rm -rf "$dir"' EXIT
failures=0

fail() { echo "FAIL (line ${BASH_LINENO[${#BASH_LINENO[@]}-2]}): $*" >&2; failures=$((failures + 1)); }
ok() { :; }

# run CMD...: stdout in $out, stderr in $err, status in $rc
run() {
  "$@" >"$dir/.out" 2>"$dir/.err"
  rc=$?
  out=$(cat "$dir/.out")
  err=$(cat "$dir/.err")
}
expect_rc() {   # expect_rc N CMD...
  local want=$1; shift
  run "$@"
  [ "$rc" = "$want" ] || fail "exit $rc, wanted $want: $* (stderr: $err)"
}
expect_in() {   # expect_in NEEDLE HAYSTACK WHAT
  case "$2" in *"$1"*) ;; *) fail "$3: \"$1\" not in: $2" ;; esac
}
expect_eq() {   # expect_eq GOT WANT WHAT
  [ "$1" = "$2" ] || fail "$3: got \"$1\", wanted \"$2\""
}
# jq over the last $out
jqo() { printf '%s' "$out" | jq -r "$@"; }
finish() {
  if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
  fi
  echo "all checks passed"
  exit 0
}
