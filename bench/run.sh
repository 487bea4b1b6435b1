#!/usr/bin/env bash
# bench/run.sh -- sparse next to zstd --patch-from, xdelta3 and bsdiff on real pairs.
#
# Usage (from the repository root):  make bench   (make bench-datasets: the
#                                                   dataset section only)
#    or:  SPARSE_DATA=/path/to/shared/data bash bench/run.sh
# Environment:
#   BENCH_SECTIONS="models datasets scale"   the sections to run, in this order
#   BENCH_REPS=3     timed repetitions of each command (the median is kept)
#   BENCH_CHAIN=1    also every consecutive step of the checkpoint chains
#   BENCH_BIG=1      also a ~200 MB BF16 pair built by bench/mkbig.py from
#                    mlp-trained (run once, not BENCH_REPS times: xdelta3
#                    and the level-19 coders need minutes on it)
#   BENCH_SYNTH_MB=100   size of the synthetic dataset pair (0: none)
#   BENCH_SYNTH_FORMATS=csv   its formats: csv, jsonl or "csv jsonl" (each
#                    costs about 5 minutes, nearly all of it zstd -19)
#   BENCH_SCALE_GB="0.5 2 8"   sizes of the scale section (add 14 for a
#                    7B BF16 model); a size is skipped when the disk under
#                    build/ has less than 4x its size free
#   BENCH_SCALE_PROFILE=mlp-bf16   its calibration (bench/mkpair.py)
#   BENCH_SCALE_TOOLS="sparse-3 zstd-3-T0 zstd-19-T0"   its tools
#   BENCH_SCALE_Z19_MAX_GB=0.5   zstd-19-T0 only up to this size: on the
#                    0.5 GB pair it took 739 s (0.7 MB/s), so 8 GB would
#                    take hours
#   BENCH_SCALE_ZSTD_MAX_GB=2    any zstd only up to this size: zstd 1.5.4's
#                    --patch-from stops on the 8 GB pair with "Can't handle
#                    files larger than 2 GB" (exit status 42), and holds base
#                    and fine-tune in memory (6.3 GB peak RSS on the 2 GB pair)
#
# Scale section (BENCH_SECTIONS=scale; `make bench-scale`).  For each size,
# bench/mkpair.py writes a LLaMA-7B-shaped base/fine-tune pair (one file per
# side) whose delta statistics are those of a real pair (bench/CALIBRATION.md);
# then, run once each: sparse compress/apply (sparse-3), zstd -3 and -19
# with --long=31 -T0 --patch-from (zstd-3-T0, zstd-19-T0), and sparse
# estimate.  Reported: delta/ft, bits per element next to the order-0
# entropy of the integer difference (the limit simple coders stop at),
# compress and apply GB/s, peak RSS, and sparse's seconds per GB at each
# size (flat when time grows linearly).  Numbers go to build/bench/scale.csv.
#
# Page cache: every timed command starts with its inputs in the page cache.
# The pairs are just written (and synced); before each apply the delta is
# read once, since sparse writes large deltas past the page cache (O_DIRECT)
# while the other tools' deltas stay in it.  A cold start costs more: by
# hand, apply of the 2 GB pair took 2.3-2.8 s with the delta out of the
# cache and 3.1-3.2 s with the base out too, against about 2.05 s warm.
#
# Models section.  For every base/ft pair under $SPARSE_DATA/models, in one
# run, each tool stores ft as a delta against base and rebuilds it:
#   sparse-3 / sparse-19   bin/sparse compress --level 3 / 19, bin/sparse apply
#   zstd-3 / zstd-19       zstd -3 / -19 --patch-from=base, zstd -d --patch-from
#   xdelta3-9              xdelta3 -9 -e -s base, xdelta3 -d -s base
#   sparse-estimate        bin/sparse estimate (1% sample; size is the estimate)
#
# Datasets section.  For every parent/derived pair under $SPARSE_DATA/datasets:
#   sparse-dataset-3       bin/sparse dataset-compress --level 3, bin/sparse apply
#   zstd-19-long / zstd-3-long   zstd -19 / -3 --long=31 --patch-from=base
#   xdelta3-9              as above
#   bsdiff                 bsdiff base derived patch, bspatch base out patch
#   sparse-estimate        bin/sparse dataset-estimate (1000 rows sampled)
# then the same (but bsdiff, whose suffix sort needs 17 bytes per input byte)
# on a synthetic pair of BENCH_SYNTH_MB MB built by bench/mkdataset.py from
# the shared CSV files (CSV, or JSON Lines), whose derived file has about 1%
# of its rows edited, removed or appended (sparse is run BENCH_REPS times,
# the others once: zstd -19 takes over 4 minutes on it).  Targets for sparse
# on 100 MB: compress < 1 s, apply < 0.5 s.  Numbers go to
# build/bench/datasets.csv.
#
# Each command runs under /usr/bin/time -f %M (peak RSS) with its wall time
# taken around it; the median of BENCH_REPS runs is reported (the machine is
# shared and noisy).  Every rebuilt file is compared with ft by cmp.
# Reported: delta/ft (size ratio, lower is better), compress and apply
# throughput in MB/s of the fine-tune (10^6 bytes), peak RSS in MiB, and the
# round-trip check (FAIL, also said on stderr, when cmp finds a difference).
# An aligned table per section goes to stdout, every number to
# build/bench/results.csv (models) and build/bench/datasets.csv; the "ALL
# real" rows total every real pair (size and time summed).  Work files live
# in build/bench/work and are removed at the end.
# What the commands print goes to build/bench/commands.log (kept), not to the
# terminal: zstd -19 --patch-from prints "[Optimal parser notes]" advice on
# stderr even with -q (-qq would silence it, and the real errors with it).  A
# failing command (non-zero exit) is still reported on stderr with its last
# line of output other than those notes, and its row is marked FAIL.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
: "${SPARSE_DATA:?set SPARSE_DATA to the shared data directory (make bench does)}"
M="$(realpath "$SPARSE_DATA")/models"
DS="$(realpath "$SPARSE_DATA")/datasets"
SPARSE="$ROOT/bin/sparse"
REPS=${BENCH_REPS:-3}
SECTIONS=${BENCH_SECTIONS:-models datasets scale}
SYNTH_MB=${BENCH_SYNTH_MB:-100}
SYNTH_FORMATS=${BENCH_SYNTH_FORMATS:-csv}
OUT="$ROOT/build/bench"
WORK="$OUT/work"
CSV="$OUT/results.csv"
DS_CSV="$OUT/datasets.csv"
LOG="$OUT/commands.log"
TOOLS="sparse-3 sparse-19 zstd-3 zstd-19 xdelta3-9"
DS_OTHERS="zstd-19-long zstd-3-long xdelta3-9 bsdiff"	# beside sparse-dataset-3
SYNTH_OTHERS="zstd-19-long zstd-3-long xdelta3-9"
SCALE_GB=${BENCH_SCALE_GB:-0.5 2 8}
SCALE_PROFILE=${BENCH_SCALE_PROFILE:-mlp-bf16}
SCALE_TOOLS=${BENCH_SCALE_TOOLS:-sparse-3 zstd-3-T0 zstd-19-T0}
SCALE_Z19_MAX_GB=${BENCH_SCALE_Z19_MAX_GB:-0.5}
SCALE_ZSTD_MAX_GB=${BENCH_SCALE_ZSTD_MAX_GB:-2}
RESULTS=""

for s in $SECTIONS; do
	case $s in
		models | datasets | scale) ;;
		*) echo "bench: unknown section \"$s\" in BENCH_SECTIONS (models, datasets, scale)" >&2; exit 1 ;;
	esac
done
for cmd in zstd xdelta3 bsdiff bspatch /usr/bin/time python3 /usr/bin/python3 cmp; do
	command -v "$cmd" >/dev/null || { echo "bench: $cmd is missing (make deps)" >&2; exit 1; }
done
[ -x "$SPARSE" ] || { echo "bench: $SPARSE is missing (make bin/sparse)" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"
: >"$LOG"

# ---- the commands of each tool ----------------------------------------------

# xdelta_window FILE: -B (source window) covering FILE, at least xdelta3's 64 MiB.
xdelta_window() {
	local s; s=$(stat -c %s "$1")
	echo $((s > 67108864 ? (s / 1048576 + 1) * 1048576 : 67108864))
}

# compress_argv TOOL BASE FT DELTA: set ARGV to TOOL's encoder command.
compress_argv() {
	local l
	case $1 in
		sparse-dataset-*) ARGV=("$SPARSE" -q dataset-compress "$2" "$3" "$4" --level "${1#sparse-dataset-}") ;;
		sparse-*) ARGV=("$SPARSE" -q compress "$2" "$3" -o "$4" --level "${1#sparse-}") ;;
		zstd-*-long) l=${1#zstd-}; ARGV=(zstd -q -f "-${l%-long}" --long=31 --patch-from="$2" "$3" -o "$4") ;;
		zstd-*-T0) l=${1#zstd-}; ARGV=(zstd -q -f "-${l%-T0}" -T0 --long=31 --patch-from="$2" "$3" -o "$4") ;;
		zstd-*) ARGV=(zstd -q -f "-${1#zstd-}" --patch-from="$2" "$3" -o "$4") ;;
		xdelta3-9) ARGV=(xdelta3 -9 -e -f -B "$(xdelta_window "$2")" -s "$2" "$3" "$4") ;;
		bsdiff) ARGV=(bsdiff "$2" "$3" "$4") ;;
	esac
}

# apply_argv TOOL BASE DELTA OUT: set ARGV to TOOL's decoder command.
apply_argv() {
	case $1 in
		sparse-*) ARGV=("$SPARSE" -q apply "$2" "$3" -o "$4") ;;
		# --long=31 lets the decoder use the window a >128 MB patch needs.
		zstd-*) ARGV=(zstd -q -f -d --long=31 --patch-from="$2" "$3" -o "$4") ;;
		xdelta3-9) ARGV=(xdelta3 -d -f -B "$(xdelta_window "$2")" -s "$2" "$3" "$4") ;;
		bsdiff) ARGV=(bspatch "$2" "$4" "$3") ;;
	esac
}

# ---- measuring ------------------------------------------------------------------

# zstd_notes: stdin without zstd's "[Optimal parser notes]" block (advice
# printed at -19 with --patch-from, not an error).
zstd_notes() {
	sed '/^\[Optimal parser notes\]/,/^Also consider playing around with searchLog and hashLog$/d'
}

# timed CMD...: run CMD once; prints "SECONDS PEAK_RSS_KB"; fails if CMD fails.
# CMD's output (stdout and stderr) is appended to $LOG.
timed() {
	local t0 t1 rss msg rc=0
	t0=$(date +%s%N)
	/usr/bin/time -f %M -o "$WORK/rss" "$@" >"$WORK/log" 2>&1 || rc=$?
	t1=$(date +%s%N)
	{ echo "\$ $*"; cat "$WORK/log"; [ "$rc" -eq 0 ] || echo "(exit status $rc)"; } >>"$LOG"
	if [ "$rc" -ne 0 ]; then
		msg=$(zstd_notes <"$WORK/log" | tail -1)
		echo "bench: failed (exit status $rc): $* (${msg:-no message}; see $LOG)" >&2
		return 1
	fi
	rss=$(tail -1 "$WORK/rss")
	awk -v ns=$((t1 - t0)) -v rss="$rss" 'BEGIN { printf "%.6f %d\n", ns / 1e9, rss }'
}

# median: the middle line of numbers on stdin (upper middle for an even count).
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] }'; }

# repeat N CLEAN CMD...: run CMD N times (rm -rf CLEAN before each); prints
# "MEDIAN_SECONDS MEDIAN_RSS_KB".
repeat() {
	local n=$1 clean=$2 i
	shift 2
	: >"$WORK/runs"
	for ((i = 0; i < n; i++)); do
		rm -rf "$clean"
		timed "$@" >>"$WORK/runs" || return 1
	done
	echo "$(cut -d' ' -f1 "$WORK/runs" | median) $(cut -d' ' -f2 "$WORK/runs" | median)"
}

# bench_tool PAIR TOOL BASE FT REPS: one CSV row for TOOL on the pair.
bench_tool() {
	local pair=$1 tool=$2 base=$3 ft=$4 reps=$5
	local d="$WORK/$pair.$tool.delta" o="$WORK/$pair.$tool.out" c="" a ok
	compress_argv "$tool" "$base" "$ft" "$d"
	if c=$(repeat "$reps" "$d" "${ARGV[@]}"); then
		[ ! -f "$d" ] || cat "$d" >/dev/null	# into the page cache, as every tool's delta (see the top)
		apply_argv "$tool" "$base" "$d" "$o"
		a=$(repeat "$reps" "$o" "${ARGV[@]}") || c=""
	fi
	if [ -z "$c" ]; then
		echo "$pair,$tool,$(stat -c %s "$ft"),,,,,,FAIL" >>"$CSV"
		return
	fi
	ok=$(cmp -s "$ft" "$o" && echo ok || echo FAIL)
	[ "$ok" = ok ] || echo "bench: FAIL: $tool on $pair: the rebuilt file differs from $ft (cmp)" >&2
	echo "$pair,$tool,$(stat -c %s "$ft"),$(stat -c %s "$d"),${c% *},${a% *},${c#* },${a#* },$ok" >>"$CSV"
	rm -f "$d" "$o"
}

# bench_estimate PAIR BASE FT REPS: a CSV row for sparse estimate.
bench_estimate() {
	local pair=$1 base=$2 ft=$3 reps=$4 e est
	e=$(repeat "$reps" "$WORK/none" "$SPARSE" estimate "$base" "$ft") || return 1
	est=$("$SPARSE" --json estimate "$base" "$ft" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["est_delta_bytes"])')
	echo "$pair,sparse-estimate,$(stat -c %s "$ft"),$est,${e% *},,${e#* },,-" >>"$CSV"
}

# bench_pair PAIR BASE FT REPS: every tool on one pair.
bench_pair() {
	echo "bench: $1 ($(stat -c %s "$3") bytes, $4 run(s) each)" >&2
	for tool in $TOOLS; do
		bench_tool "$1" "$tool" "$2" "$3" "$4"
	done
	bench_estimate "$1" "$2" "$3" "$4"
}

# ---- datasets ---------------------------------------------------------------------

# bench_ds_estimate PAIR BASE DERIVED REPS: a CSV row for sparse
# dataset-estimate (size: the estimated delta; last column: the format).
bench_ds_estimate() {
	local pair=$1 base=$2 der=$3 reps=$4 e est
	if ! e=$(repeat "$reps" "$WORK/none" "$SPARSE" dataset-estimate "$base" "$der") ||
		! est=$("$SPARSE" --json dataset-estimate "$base" "$der" |
			python3 -c 'import json, sys; j = json.load(sys.stdin); print(j["est_delta_bytes"], j["format"])'); then
		echo "$pair,sparse-estimate,$(stat -c %s "$der"),,,,,,FAIL," >>"$CSV"
		return
	fi
	echo "$pair,sparse-estimate,$(stat -c %s "$der"),${est% *},${e% *},,${e#* },,-,${est#* }" >>"$CSV"
}

# bench_ds_pair PAIR BASE DERIVED REPS OTHER_REPS TOOLS...: sparse
# dataset-compress (REPS runs), then each of TOOLS (OTHER_REPS runs), then
# sparse dataset-estimate.
bench_ds_pair() {
	local pair=$1 base=$2 der=$3 reps=$4 other=$5 tool
	shift 5
	echo "bench: $pair ($(stat -c %s "$der") bytes; sparse $reps run(s), others $other)" >&2
	bench_tool "$pair" sparse-dataset-3 "$base" "$der" "$reps"
	for tool in "$@"; do
		bench_tool "$pair" "$tool" "$base" "$der" "$other"
	done
	bench_ds_estimate "$pair" "$base" "$der" "$reps"
}

# section_datasets: every real dataset pair, then the synthetic ones.
section_datasets() {
	local pair fmt
	CSV=$DS_CSV
	echo "pair,tool,ft_bytes,delta_bytes,compress_s,apply_s,compress_rss_kb,apply_rss_kb,roundtrip,format" >"$CSV"
	for pair in "$DS"/*/; do
		pair=${pair%/}
		# shellcheck disable=SC2086 # DS_OTHERS is a list of words
		bench_ds_pair "$(basename "$pair")" "$(ls "$pair"/base.*)" "$(ls "$pair"/derived.*)" \
			"$REPS" "$REPS" $DS_OTHERS
	done
	if [ "$SYNTH_MB" -gt 0 ]; then
		for fmt in $SYNTH_FORMATS; do
			echo "bench: building a ${SYNTH_MB} MB $fmt pair with bench/mkdataset.py" >&2
			/usr/bin/python3 bench/mkdataset.py --format "$fmt" --mb "$SYNTH_MB" \
				"$WORK/synth-base.$fmt" "$WORK/synth-derived.$fmt" "$DS"/*/*.csv
			# shellcheck disable=SC2086
			bench_ds_pair "synthetic-${SYNTH_MB}MB-$fmt" "$WORK/synth-base.$fmt" \
				"$WORK/synth-derived.$fmt" "$REPS" 1 $SYNTH_OTHERS
			rm -f "$WORK/synth-base.$fmt" "$WORK/synth-derived.$fmt"
		done
	fi
	echo
	echo "Datasets (size: the delta as a percentage of the derived file; MB/s of the derived file):"
	python3 bench/report.py --datasets "$CSV"
	RESULTS="$RESULTS$CSV "
}

# ---- models -----------------------------------------------------------------------

# section_models: every model pair (and the chains, the big pair if asked).
section_models() {
	local chain prev ck p f
	CSV="$OUT/results.csv"
	echo "pair,tool,ft_bytes,delta_bytes,compress_s,apply_s,compress_rss_kb,apply_rss_kb,roundtrip" >"$CSV"
	bench_pair gpt2-lora-r8 "$M/gpt2-lora-r8/base.safetensors" "$M/gpt2-lora-r8/ft.safetensors" "$REPS"
	bench_pair roberta-lora-r4 "$M/roberta-lora-r4-biasall/base.safetensors" \
		"$M/roberta-lora-r4-biasall/ft.safetensors" "$REPS"
	for p in f32 bf16; do
		for f in ft ft_frozen; do
			bench_pair "mlp-$f.$p" "$M/mlp-trained/base.$p.safetensors" "$M/mlp-trained/$f.$p.safetensors" "$REPS"
		done
	done
	if [ "${BENCH_CHAIN:-0}" = 1 ]; then
		for chain in gpt2-lora-r8 roberta-lora-r4-biasall; do
			prev=""
			for ck in $(ls "$M/$chain/chain" | sort -t- -k2 -n); do
				[ -n "$prev" ] && bench_pair "${chain%%-*}-${prev%.safetensors}-${ck#ckpt-}" \
					"$M/$chain/chain/$prev" "$M/$chain/chain/$ck" "$REPS"
				prev=$ck
			done
		done
	fi
	if [ "${BENCH_BIG:-0}" = 1 ]; then
		echo "bench: building a ~200 MB BF16 pair with bench/mkbig.py" >&2
		python3 bench/mkbig.py "$M/mlp-trained/base.bf16.safetensors" "$M/mlp-trained/ft.bf16.safetensors" \
			200 "$WORK/big-base.safetensors" "$WORK/big-ft.safetensors"
		bench_pair synthetic-198MB-bf16 "$WORK/big-base.safetensors" "$WORK/big-ft.safetensors" 1
	fi
	echo
	echo "Models (delta/ft: the delta's size over the fine-tune's; MB/s of the fine-tune):"
	python3 bench/report.py "$CSV"
	RESULTS="$RESULTS$CSV "
}

# ---- scale ------------------------------------------------------------------------

# section_scale: generated 7B-shaped pairs of each size in SCALE_GB.
section_scale() {
	local gb dir base ft free_kb need_kb tool
	CSV="$OUT/scale.csv"
	echo "pair,tool,ft_bytes,delta_bytes,compress_s,apply_s,compress_rss_kb,apply_rss_kb,roundtrip,elements,order0_bits" >"$CSV"
	for gb in $SCALE_GB; do
		free_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
		need_kb=$(awk -v g="$gb" 'BEGIN { printf "%d", g * 4 * 1e6 }')
		if [ "$free_kb" -lt "$need_kb" ]; then
			echo "bench: scale ${gb} GB skipped: $((free_kb / 1000000)) GB free, $((need_kb / 1000000)) GB needed" >&2
			continue
		fi
		dir="$WORK/scale-$gb"
		echo "bench: building a ${gb} GB $SCALE_PROFILE pair with bench/mkpair.py" >&2
		SPARSE_DATA="$SPARSE_DATA" /usr/bin/python3 bench/mkpair.py "$dir" --gb "$gb" \
			--profile "$SCALE_PROFILE" --shard-gb 1000 2>>"$LOG"
		sync	# the pair's writeback must not run during the timed tools
		base="$dir/base/model-00001-of-00001.safetensors"
		ft="$dir/ft/model-00001-of-00001.safetensors"
		echo "bench: scale-${gb}GB ($(stat -c %s "$ft") bytes, 1 run each)" >&2
		for tool in $SCALE_TOOLS; do
			if [ "$tool" = zstd-19-T0 ] && awk -v g="$gb" -v m="$SCALE_Z19_MAX_GB" 'BEGIN { exit !(g > m) }'; then
				echo "bench: zstd-19-T0 skipped on ${gb} GB (BENCH_SCALE_Z19_MAX_GB=$SCALE_Z19_MAX_GB)" >&2
				continue
			fi
			if [ "${tool#zstd}" != "$tool" ] && awk -v g="$gb" -v m="$SCALE_ZSTD_MAX_GB" 'BEGIN { exit !(g > m) }'; then
				echo "bench: $tool skipped on ${gb} GB (BENCH_SCALE_ZSTD_MAX_GB=$SCALE_ZSTD_MAX_GB)" >&2
				continue
			fi
			bench_tool "scale-${gb}GB" "$tool" "$base" "$ft" 1
		done
		bench_estimate "scale-${gb}GB" "$base" "$ft" 1
		python3 - "$dir/stats.json" "$CSV" "scale-${gb}GB" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
rows = open(sys.argv[2]).read().splitlines()
out = [r + ",%d,%.4f" % (st["elements"], st["order0_bits"]) if r.startswith(sys.argv[3] + ",") else r
       for r in rows]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
		rm -rf "$dir"
	done
	echo
	echo "Scale ($SCALE_PROFILE calibration; GB = 10^9 bytes of the fine-tune; one run each):"
	python3 bench/report.py --scale "$CSV"
	RESULTS="$RESULTS$CSV "
}

# ---- run and report -----------------------------------------------------------------

echo "sparse $("$SPARSE" --json version | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')," \
	"zstd $(zstd -V | sed -n 's/.* v\([0-9.]*\).*/\1/p'), xdelta3 $(xdelta3 -V 2>&1 | sed -n 's/^Xdelta version \([0-9.]*\).*/\1/p')," \
	"bsdiff $(dpkg-query -W -f='${Version}' bsdiff 2>/dev/null || echo '?')"
echo "$(nproc) CPU(s): $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); median of $REPS run(s); MB = 10^6 bytes"
for s in $SECTIONS; do
	"section_$s"
done
rm -rf "$WORK"
echo
echo "results: $RESULTS(output of the commands: $LOG)"
