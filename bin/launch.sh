# Shared by the bin/ launchers (sourced, not run). Runs the built JavaScript when `make build` is
# newer than every TypeScript source, otherwise the sources through tsx, so a checkout never runs
# stale code.
# usage: launch <path of the entry without extension, relative to the repo root> "$@"
launch() {
  entry=$1
  shift
  stamp="$root/dist/.build-stamp"
  if [ -f "$root/dist/$entry.js" ] && [ -f "$stamp" ] && \
     [ -z "$(find "$root/agent" "$root/controller" "$root/pki" "$root/common" "$root/proto" "$root/lab" -name '*.ts' -newer "$stamp" -print -quit 2>/dev/null)" ]; then
    exec node "$root/dist/$entry.js" "$@"
  fi
  exec node --import "$root/node_modules/tsx/dist/esm/index.mjs" "$root/$entry.ts" "$@"
}
