# Steps shared by build-kernel.sh and build-test-kernel.sh, which source this file (it is part of
# both cache keys, so a change here rebuilds both kernels once). The caller defines log() and sets
# $obj (the object tree) and $start (when its build began, in seconds since the epoch).

# check_fragment FRAGMENT: every option of FRAGMENT must have survived Kconfig's dependency
# resolution into $obj/.config. Logs each one that did not; fails if any did not.
check_fragment() {
  local bad=0 line opt want
  while IFS= read -r line; do
    [[ $line =~ ^(CONFIG_[A-Z0-9_]+)=(.*)$ ]] || continue
    opt=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
    if [[ $want == n ]]; then
      if grep -q "^$opt=[ym]" "$obj/.config"; then log "option $opt should be off"; bad=1; fi
    elif ! grep -qx "$opt=$want" "$obj/.config"; then
      log "option $opt=$want did not survive Kconfig (got: $(grep "^$opt=" "$obj/.config" || echo unset))"
      bad=1
    fi
  done <"$1"
  ((bad == 0))
}

# make_with_progress EVERY WHAT COMMAND...: runs COMMAND (the kernel's make) in the background with
# its output in $obj/build.log and logs progress every EVERY seconds: a kernel build is minutes of
# silence otherwise. On failure shows the log's tail and exits.
make_with_progress() {
  local every=$1 what=$2 pid
  shift 2
  "$@" >"$obj/build.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep "$every"
    kill -0 "$pid" 2>/dev/null || break
    log "$(( $(date +%s) - start ))s elapsed, $(grep -cE '^\s+(CC|AS|LD|AR)\s' "$obj/build.log" || true) steps done"
  done
  if ! wait "$pid"; then
    tail -30 "$obj/build.log" >&2
    log "error: $what build failed (full log: $obj/build.log)"
    exit 1
  fi
}

# publish OUT SECONDS FILE...: puts the FILEs (paths in $obj, stored under their base names), the
# resolved config and the build time into OUT, whole or not at all: a cache hit trusts OUT.
publish() {
  local out=$1 secs=$2 tmp="$1.tmp" f
  shift 2
  rm -rf "$tmp" && mkdir -p "$tmp"
  for f in "$@"; do cp "$obj/$f" "$tmp/$(basename "$f")"; done
  cp "$obj/.config" "$tmp/config"
  echo "$secs" >"$tmp/build-seconds"
  rm -rf "$out" && mv "$tmp" "$out"
}
