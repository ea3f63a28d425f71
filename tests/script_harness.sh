# script_harness.sh - the harness of the shell test programs (sourced):
# pass NAME / fail NAME WHY LOG print "ok/FAIL" lines like tests/test.h,
# finish prints the closing "N passed, N failed" and sets the exit status.
passed=0
failed=0
pass() { echo "ok $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); echo "--- log:"; tail -n 30 "$3"; echo "---"; }
finish() {
    echo "$passed passed, $failed failed"
    [ $failed -eq 0 ]
}
