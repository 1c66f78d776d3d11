#!/usr/bin/env bash
# ############################################################################
# The whole pipeline as one recipe driver with numbered stages (Kaldi / WeSpeaker style):
#   1 teacher   train.py  <corpus train YAML>                        -> <exp_dir>/teacher
#   2 student   train.py  <corpus MKD YAML> --teacher_folder=<teacher> --concat_teacher=False
#                                                                      -> <exp_dir>/student
#   3 compress  prune.py  <corpus structured-pruning YAML> --model_folder=<student>
#                                                                      -> <exp_dir>/student/pruned_structured
#   4 export    export.py <compressed> --out <exp_dir>/exported --int8 --eval-manifest <student>/manifests/test.csv
#   5 infer     infer.py  <exp_dir>/exported <a few wavs of the teacher's test split> --json
#                                                                      -> <exp_dir>/infer.jsonl
#   6 probe     probe.py  hparams/probe/<corpus>.yaml --model_folder=<teacher>  -> <exp_dir>/probe
#   7 audit     audit.py  hparams/audit/<...>.yaml --model_folder=<teacher>     -> <exp_dir>/audit
#
#   bash run.sh --corpus demo [--stage 1] [--stop_stage 7] [--dry_run]
#               [--train_opts "--number_of_epochs=1"] [--prune_opts "--max_rounds=1"]
#   bash run.sh --corpus speechocean762 --data_folder ../shared/data/speechocean762-8k --stage 1 --stop_stage 4
#
# Runs from the repository root (relative paths are taken from there). Every stage can be run
# again: train.py and prune.py resume their run, the other stages rewrite their outputs.
# Documentation: docs/driver.md.
# ############################################################################
set -euo pipefail

# ---- the recipe of each corpus: one YAML per stage ("" = the corpus has no such stage) --------
corpus_recipe() {
    case "$1" in
        demo)
            data_default=demo_data
            teacher_yaml=hparams/demo.yaml
            student_yaml=hparams/demo_mkd.yaml
            prune_yaml=hparams/demo_prune_structured.yaml
            probe_yaml=hparams/probe/demo.yaml
            probe_data=false                 # the probe YAML reads the model's own manifests
            audit_yaml=hparams/audit/demo.yaml
            audit_data=false
            ;;
        speechocean762)
            data_default=../shared/data/speechocean762-8k
            teacher_yaml=hparams/speechocean762/train.yaml
            student_yaml=hparams/speechocean762/mkd.yaml
            prune_yaml=hparams/speechocean762/prune_structured.yaml
            probe_yaml=hparams/probe/speechocean762.yaml
            probe_data=true                  # the probe YAML prepares the corpus from data_folder
            audit_yaml=hparams/audit/demo.yaml   # audits the model on its own manifests
            audit_data=false
            ;;
        commonvoice)
            data_default=../shared/data/commonvoice-sample-8k
            teacher_yaml=hparams/commonvoice/train.yaml
            student_yaml=hparams/commonvoice/mkd.yaml
            prune_yaml=""
            probe_yaml=""
            probe_data=false
            audit_yaml=hparams/audit/commonvoice.yaml
            audit_data=true
            ;;
        *)
            return 1
            ;;
    esac
}
CORPORA="demo speechocean762 commonvoice"

# ---- the output folders: every stage reads the one the previous stage wrote ------------------
output_folders() {
    teacher=$exp_dir/teacher                   # stage 1
    student=$exp_dir/student                   # stage 2
    compressed=$student/pruned_structured      # stage 3 (prune.py's structured default, given explicitly)
    exported=$exp_dir/exported                 # stage 4
    infer_out=$exp_dir/infer.jsonl             # stage 5
    probe_dir=$exp_dir/probe                   # stage 6
    audit_dir=$exp_dir/audit                   # stage 7
}

STAGE_NAMES=(- teacher student compress export infer probe audit)

# ---- options ----------------------------------------------------------------------------------
corpus=""
stage=1
stop_stage=7
dry_run=false
exp_dir=""          # default results/run/<corpus>
data_folder=""      # default: the corpus's (corpus_recipe)
opts=""             # appended to train.py and prune.py
train_opts=""       # appended to train.py (stages 1, 2)
prune_opts=""       # appended to prune.py (stage 3)
export_opts=""      # appended to export.py (stage 4)
probe_opts=""       # appended to probe.py (stage 6)
audit_opts=""       # appended to audit.py (stage 7)
n_wavs=4            # test wavs profiled in stage 5
python=${PYTHON:-python}

usage() {
    cat <<EOF
usage: bash run.sh --corpus {${CORPORA// /|}} [--stage N] [--stop_stage N] [--dry_run]
                   [--exp_dir DIR] [--data_folder DIR] [--opts "..."] [--train_opts "..."]
                   [--prune_opts "..."] [--export_opts "..."] [--probe_opts "..."]
                   [--audit_opts "..."] [--n_wavs N]
stages: 1 teacher, 2 student, 3 compress, 4 export, 5 infer, 6 probe, 7 audit (docs/driver.md)
EOF
}

die() {
    echo "run.sh: error: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    arg=$1
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --dry_run|--dry-run) dry_run=true; shift; continue ;;
    esac
    case "$arg" in
        --*=*) name=${arg%%=*}; value=${arg#*=}; shift ;;
        --*)
            name=$arg
            [ $# -ge 2 ] || die "option $name needs a value"
            value=$2; shift 2 ;;
        *) usage >&2; die "unexpected argument '$arg'" ;;
    esac
    case "$name" in
        --corpus) corpus=$value ;;
        --stage) stage=$value ;;
        --stop_stage|--stop-stage) stop_stage=$value ;;
        --exp_dir|--exp-dir) exp_dir=$value ;;
        --data_folder|--data-folder) data_folder=$value ;;
        --opts) opts=$value ;;
        --train_opts|--train-opts) train_opts=$value ;;
        --prune_opts|--prune-opts) prune_opts=$value ;;
        --export_opts|--export-opts) export_opts=$value ;;
        --probe_opts|--probe-opts) probe_opts=$value ;;
        --audit_opts|--audit-opts) audit_opts=$value ;;
        --n_wavs|--n-wavs) n_wavs=$value ;;
        *) usage >&2; die "unknown option '$name'" ;;
    esac
done

[ -n "$corpus" ] || { usage >&2; die "--corpus is required (one of: $CORPORA)"; }
corpus_recipe "$corpus" || die "unknown corpus '$corpus' (known: $CORPORA)"
is_stage() { [[ "$1" =~ ^[1-7]$ ]]; }
is_stage "$stage" || die "unknown stage '$stage' (stages are 1 to 7: ${STAGE_NAMES[*]:1})"
is_stage "$stop_stage" || die "unknown stop stage '$stop_stage' (stages are 1 to 7: ${STAGE_NAMES[*]:1})"
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop_stage $stop_stage"
[[ "$n_wavs" =~ ^[1-9][0-9]*$ ]] || die "--n_wavs must be a positive integer, not '$n_wavs'"
exp_dir=${exp_dir:-results/run/$corpus}
data_folder=${data_folder:-$data_default}
exp_dir=${exp_dir%/}
output_folders

cd "$(dirname "${BASH_SOURCE[0]}")"   # the entry scripts and hparams/ are relative to the root

# options strings -> arrays (word splitting without globbing: [gender,age_sub] stays as is)
split() { read -r -a "$1" <<< "$2" || true; }
split opts_a "$opts"; split train_a "$train_opts"; split prune_a "$prune_opts"
split export_a "$export_opts"; split probe_a "$probe_opts"; split audit_a "$audit_opts"

# ---- every selected stage has its YAML (checked before anything runs) -------------------------
stage_yaml() {
    case "$1" in
        1) echo "$teacher_yaml" ;;
        2) echo "$student_yaml" ;;
        3|4|5) echo "$prune_yaml" ;;   # export and infer take the compressed model of stage 3
        6) echo "$probe_yaml" ;;
        7) echo "$audit_yaml" ;;
    esac
}
for ((s = stage; s <= stop_stage; s++)); do
    yaml=$(stage_yaml "$s")
    if [ -z "$yaml" ]; then
        case "$s" in
            3) die "corpus '$corpus' has no YAML for stage 3 (compress): no hparams/$corpus/prune_structured.yaml" ;;
            4|5) die "corpus '$corpus' has no stage $s (${STAGE_NAMES[$s]}): it takes the compressed model of stage 3, and the corpus has no YAML for stage 3 (no hparams/$corpus/prune_structured.yaml)" ;;
            *) die "corpus '$corpus' has no YAML for stage $s (${STAGE_NAMES[$s]})" ;;
        esac
    fi
    [ -f "$yaml" ] || die "stage $s (${STAGE_NAMES[$s]}) of corpus '$corpus': $yaml not found"
done

# ---- helpers ----------------------------------------------------------------------------------
show() {  # the command as one line a shell can run again
    local out="" a
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=" $a"; else out+=" '${a//\'/\'\\\'\'}'"; fi
    done
    echo "${out# }"
}

run() {  # print the command; run it unless --dry_run
    show "$@"
    if ! $dry_run; then "$@"; fi
}

need() {  # need <file> <stage that writes it>: a finished output of an earlier stage
    $dry_run && return 0
    [ -e "$1" ] || die "stage $s (${STAGE_NAMES[$s]}) needs $1, written by stage $2 (${STAGE_NAMES[$2]}): run --stage $2 first"
}

test_wavs() {  # test_wavs <manifest> <n>: n wavs spread over the manifest, one a line
    "$python" - "$1" "$2" <<'EOF'
import csv
import sys

with open(sys.argv[1], newline="") as f:
    wavs = [row["wav"] for row in csv.DictReader(f)]
n = min(int(sys.argv[2]), len(wavs))
print("\n".join(wavs[i * len(wavs) // n] for i in range(n)))
EOF
}

# ---- the stages -------------------------------------------------------------------------------
for ((s = stage; s <= stop_stage; s++)); do
    echo "stage $s: ${STAGE_NAMES[$s]}"
    case "$s" in
        1)
            run "$python" train.py "$teacher_yaml" --output_folder="$teacher" --data_folder="$data_folder" \
                ${opts_a[@]+"${opts_a[@]}"} ${train_a[@]+"${train_a[@]}"}
            ;;
        2)
            need "$teacher/results.json" 1
            run "$python" train.py "$student_yaml" --output_folder="$student" --data_folder="$data_folder" \
                --teacher_folder="$teacher" --concat_teacher=False \
                ${opts_a[@]+"${opts_a[@]}"} ${train_a[@]+"${train_a[@]}"}
            ;;
        3)
            need "$student/results.json" 2
            run "$python" prune.py "$prune_yaml" --model_folder="$student" --output_folder="$compressed" \
                ${opts_a[@]+"${opts_a[@]}"} ${prune_a[@]+"${prune_a[@]}"}
            ;;
        4)
            need "$compressed/results.json" 3
            # the int8 accuracy change is measured on the test split the compressed model was retrained on
            run "$python" export.py "$compressed" --out "$exported" --int8 \
                --eval-manifest "$student/manifests/test.csv" ${export_a[@]+"${export_a[@]}"}
            ;;
        5)
            need "$exported/export.json" 4
            manifest=$teacher/manifests/test.csv   # a few test wavs of the teacher's split
            if [ -f "$manifest" ]; then
                wav_lines=$(test_wavs "$manifest" "$n_wavs")
                mapfile -t wavs <<< "$wav_lines"
                [ -n "${wavs[0]:-}" ] || die "stage 5 (infer): $manifest lists no wav"
                echo "$(show "$python" infer.py "$exported" "${wavs[@]}" --json) > $infer_out"
            elif $dry_run; then  # not written yet: say which wavs the stage will take
                echo "$(show "$python" infer.py "$exported") <$n_wavs wavs of $manifest> --json > $infer_out"
            else
                die "stage 5 (infer) needs $manifest, written by stage 1 (teacher): run --stage 1 first"
            fi
            if ! $dry_run; then
                "$python" infer.py "$exported" "${wavs[@]}" --json > "$infer_out.part"
                mv "$infer_out.part" "$infer_out"
                echo "$(wc -l < "$infer_out") records in $infer_out"
            fi
            ;;
        6)
            need "$teacher/results.json" 1
            extra=()
            if $probe_data; then extra+=(--data_folder="$data_folder"); fi
            run "$python" probe.py "$probe_yaml" --model_folder="$teacher" --output_folder="$probe_dir" \
                ${extra[@]+"${extra[@]}"} ${probe_a[@]+"${probe_a[@]}"}
            ;;
        7)
            need "$teacher/results.json" 1
            extra=()
            if $audit_data; then extra+=(--data_folder="$data_folder"); fi
            run "$python" audit.py "$audit_yaml" --model_folder="$teacher" --output_folder="$audit_dir" \
                ${extra[@]+"${extra[@]}"} ${audit_a[@]+"${audit_a[@]}"}
            ;;
    esac
done
