# Shared by the reproduction scripts (sourced, not run): resumable steps over the results folder "$R".

# step DONE CMD...: run CMD unless DONE exists; create DONE only when CMD succeeded.
step() {
  local done="$1"; shift
  if [ -e "$done" ]; then echo "   skip (done): ${done#"$R"/}"; return 0; fi
  mkdir -p "$(dirname "$done")"
  echo "+ $*"
  "$@"
  date -u +%FT%TZ > "$done"
}
resume_flag() { [ -f "$1/checkpoint.pt" ] && echo --resume || true; }
