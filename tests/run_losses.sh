# run_losses.sh - the losses of two `distill run`s side by side (sourced by
# the shell tests): `losses RUN` lists the student metrics rows of
# $work/RUN/metrics.jsonl, `compare FOUND REFERENCE TOLERANCE` checks that
# two runs logged the same $ITERATIONS iterations with every loss term
# finite and within TOLERANCE (relative) of the reference's. The caller
# sets $work and $ITERATIONS.

# losses RUN: one line per student metrics row: iteration total dino_local dino_global ibot
# (a field that is null or missing prints as "null")
losses() {
    awk '/"role":"student"/ {
        line = ""
        n = split("iteration loss dino_local dino_global ibot", keys, " ")
        for (i = 1; i <= n; i++) {
            value = "null"
            key = "\"" keys[i] "\":"
            if (match($0, key "[^,}]*")) value = substr($0, RSTART + length(key), RLENGTH - length(key))
            line = line (i > 1 ? " " : "") value
        }
        print line
    }' "$work/$1/metrics.jsonl" 2>/dev/null
}

# compare FOUND REFERENCE TOLERANCE: prints "worst W at iteration I (TERM)" and
# succeeds when both runs logged the same $ITERATIONS iterations, every value
# is a finite number, and every term is within TOLERANCE (relative) of the
# reference's; else prints why and fails.
compare() {
    losses "$1" > "$work/$1.losses"
    losses "$2" > "$work/$2.losses"
    paste -d ' ' "$work/$1.losses" "$work/$2.losses" | awk -v tol="$3" -v want=$ITERATIONS \
        -v found_lines="$(wc -l < "$work/$1.losses")" -v ref_lines="$(wc -l < "$work/$2.losses")" '
        function number(x) { return x ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ }
        BEGIN {
            split("total dino_local dino_global ibot", names, " ")
            if (found_lines != want || ref_lines != want) {
                printf "%d and %d iterations logged, expected %d\n", found_lines, ref_lines, want
                bad = 1
                exit 1
            }
        }
        {
            if ($1 != $6) { printf "iteration %s against %s\n", $1, $6; bad = 1; exit 1 }
            for (i = 2; i <= 5; i++) {
                a = $i; b = $(i + 5)
                if (!number(a) || !number(b)) {
                    printf "iteration %s: %s %s, the reference %s: not a finite number\n", $1, names[i - 1], a, b
                    bad = 1
                    exit 1
                }
                d = a - b; if (d < 0) d = -d
                r = b < 0 ? -b : b
                e = d / (r > 1e-30 ? r : 1e-30)
                if (e > worst || rows == 0 && i == 2) { worst = e; at = $1; term = names[i - 1] }
            }
            rows++
        }
        END {
            if (bad) exit 1
            over = (worst > tol)
            printf "worst rel diff %.2e at iteration %s (%s)%s\n", worst, at, term, (over ? ", over " tol : "")
            if (over) exit 1
        }'
}
