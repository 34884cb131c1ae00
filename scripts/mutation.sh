#!/usr/bin/env bash
# Mutation testing of the reference ops (refimpl/ops/*.py) with mutmut 3. Not part of CI: a full
# run is thousands of mutants, an hour or more on 2 shared cores. Results: spec/mutation.md.
#
#   pip install -e '.[dev,mutation]'
#   scripts/mutation.sh                      # every module below, in this order
#   scripts/mutation.sh norms rope           # only these modules
#   scripts/mutation.sh --report             # the table again (and survivors: add --survivors)
#
# Which tests run for a mutant: the config in pyproject.toml ([tool.mutmut]) selects tests/ops/
# (less test_spec_index.py, which reads spec/ only); mutmut first runs that selection once and
# records, per function of refimpl/ops, the tests that call it; each mutant then runs only those
# tests, with -x (stop at the first failure). So the module -> tests map is recorded, not guessed:
#
#   refimpl/ops/norms.py        -> tests/ops/test_norms.py (+ any other tests/ops test that calls it)
#   refimpl/ops/activations.py  -> tests/ops/test_activations.py, test_moe.py (swiglu experts)
#   refimpl/ops/attention.py    -> tests/ops/test_attention.py, test_attention_pieces.py
#   refimpl/ops/sampling.py     -> tests/ops/test_sampling.py (softmax, log_softmax, filters)
#   refimpl/ops/moe.py          -> tests/ops/test_moe.py
#   refimpl/ops/mxfp4.py        -> tests/ops/test_mxfp4.py, test_moe.py (gpt-oss experts)
#   refimpl/ops/quant.py        -> tests/ops/test_quant.py
#   refimpl/ops/rope.py         -> tests/ops/test_rope.py
#   refimpl/ops/elementwise.py  -> tests/ops/test_elementwise.py
#   refimpl/ops/{embed,linear}.py -> tests/ops/test_embed_linear.py
#   refimpl/ops/dropout.py      -> tests/ops/test_dropout.py
#
# `mutmut tests-for-mutant NAME` prints the tests of one mutant. The conformance suite is not in the
# selection: it judges a backend against the reference itself, so a mutated reference moves the
# oracle with it and only slows the run down.
#
# Hypothesis: scripts/mutation_profile.py registers the "mutation" profile (derandomized, few
# examples: MUTATION_MAX_EXAMPLES, default 10), loaded by pytest_add_cli_args. Everything runs under
# nice -n 19 with one child at a time; mutmut's own timeout (15x the test time + 1 s, CPU limit)
# stops a mutant that loops. A second run resumes: mutants with a result are not run again
# (delete mutants/ to start afresh; after changing tests, mutmut re-collects the test map).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}"
export MUTATION_MAX_EXAMPLES="${MUTATION_MAX_EXAMPLES:-10}"

if [[ "${1:-}" == "--report" ]]; then
    shift
    exec python scripts/mutation_report.py "$@"
fi

run_names() {  # mutmut run on the mutant names read from stdin (one a line), under nice and a timeout
    local log=$1
    local names=()
    while IFS= read -r n; do [[ -n "$n" ]] && names+=("$n"); done
    if [[ ${#names[@]} -eq 0 ]]; then echo "nothing to run"; return 0; fi
    nice -n 19 timeout -s INT "${MUTATION_TIMEOUT_S:-3600}" mutmut run --max-children 1 "${names[@]}" \
        > "$log" 2>&1 || echo "mutmut exited with $? (a timeout keeps the results so far)"
}

if [[ "${1:-}" == "--rerun-survivors" ]]; then
    # run the survivors of these modules again (after adding tests): mutmut reruns named mutants
    shift
    python scripts/mutation_report.py --names survived --module "$@" | run_names mutants/rerun.log
    exec python scripts/mutation_report.py --module "$@"
fi

modules=("$@")
if [[ ${#modules[@]} -eq 0 ]]; then
    modules=(norms quant rope activations sampling attention moe mxfp4 elementwise embed linear dropout)
fi
mkdir -p mutants
for m in "${modules[@]}"; do
    start=$(date +%s)
    if [[ -e "mutants/refimpl/ops/${m}.py.meta" ]]; then
        # resume: only the mutants without a result (mutmut reruns every mutant a name matches), or a
        # random sample of them (MUTATION_SAMPLE=N, seed MUTATION_SEED) when time is short
        python scripts/mutation_report.py --names unchecked --module "$m" \
            --sample "${MUTATION_SAMPLE:-0}" --seed "${MUTATION_SEED:-0}" | run_names "mutants/run-${m}.log"
    else
        echo "refimpl.ops.${m}.*" | run_names "mutants/run-${m}.log"
    fi
    echo "${m}: $(( $(date +%s) - start )) s wall"
    echo "${m} $(( $(date +%s) - start ))" >> mutants/wall-seconds.txt
done
python scripts/mutation_report.py --module "${modules[@]}"
