#!/bin/sh
# tests/user_asan/run.sh STAGE [OUTDIR]
#
# Builds every tests/user_asan/*.c as a USER program would: -fsanitize=address
# (and undefined), against the staged install STAGE (make install
# PREFIX=STAGE) of the normally built, uninstrumented library, through
# pkg-config - linked shared and static, with each compiler of $UT_CC
# (default: gcc clang, those present).  Run with no argument each program
# must exit 0 with no AddressSanitizer report; each argument its header
# lists in a "UAP:" line must end in an AddressSanitizer report of
# use-after-poison (the library poisons what its caches hold).
set -u
STAGE=${1:?usage: run.sh STAGE [OUTDIR]}
OUT=${2:-$STAGE/user_asan}
HERE=$(cd "$(dirname "$0")" && pwd)
CCS=${UT_CC:-gcc clang}
export PKG_CONFIG_PATH="$STAGE/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=66"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
mkdir -p "$OUT" || exit 1

CFLAGS_PC=$(pkg-config --cflags syncpool) || { echo "user-asan: no syncpool.pc in $STAGE"; exit 1; }
LIBS_SH=$(pkg-config --libs syncpool)
LIBS_ST="$STAGE/lib/libsyncpool.a $(pkg-config --libs --static syncpool | sed 's/-lsyncpool//')"
FLAGS="-std=c11 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -Wall -Wextra -Werror -pthread"

fail=0 pass=0
for cc in $CCS; do
	command -v "$cc" >/dev/null 2>&1 || { echo "user-asan: $cc not found, skipped"; continue; }
	for src in "$HERE"/*.c; do
		name=$(basename "$src" .c)
		uaps=$(sed -n 's/^ \*   [a-z_]* \(uap[a-z-]*\) .*/\1/p' "$src")
		for link in shared static; do
			bin="$OUT/$name-$cc-$link"
			if [ $link = shared ]; then
				$cc $FLAGS "$src" -o "$bin" $CFLAGS_PC $LIBS_SH -Wl,-rpath,"$STAGE/lib" 2>"$bin.build"
			else
				$cc $FLAGS "$src" -o "$bin" $CFLAGS_PC $LIBS_ST 2>"$bin.build"
			fi || { echo "user-asan: FAIL $name ($cc, $link): build"; cat "$bin.build"; fail=$((fail + 1)); continue; }
			timeout 120 "$bin" >"$bin.out" 2>&1
			rc=$?
			n=$(grep -c -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error' "$bin.out")
			if [ $rc -ne 0 ] || [ "$n" -ne 0 ]; then
				echo "user-asan: FAIL $name ($cc, $link): exit $rc, $n reports"
				head -60 "$bin.out"
				fail=$((fail + 1))
				continue
			fi
			ok=1
			for u in $uaps; do
				timeout 120 "$bin" "$u" >"$bin.$u" 2>&1
				rc=$?
				if [ $rc -ne 66 ] || ! grep -q 'ERROR: AddressSanitizer: use-after-poison' "$bin.$u"; then
					echo "user-asan: FAIL $name $u ($cc, $link): exit $rc, no use-after-poison report"
					tail -20 "$bin.$u"
					ok=0
				fi
			done
			if [ $ok -eq 0 ]; then
				fail=$((fail + 1))
				continue
			fi
			echo "user-asan: ok $name ($cc, $link): clean; reported:" $uaps
			pass=$((pass + 1))
		done
	done
done
echo "user-asan: $pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
