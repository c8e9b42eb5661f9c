#!/usr/bin/env bash
# Build the reference Go worker (../shared/reference/healthprobe.go, unchanged
# except that `log/slog` is swapped for a shim: Debian's Go here is 1.19) with
# stand-ins for its rtmanager packages, plus two drivers:
#   refreplay  folds a healthprobe journal through the reference's own
#              recordFailure / recordSuccess / pruneStates;
#   refrun     runs the reference's real Tick N times over a records file;
# and fleet (fleet/main.go), health engines served by Go's net/http.
# Output: target/reference/bin/{refreplay,refrun,fleet}. Needs Go >= 1.19.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source_go=${REFERENCE_GO:-$root/../shared/reference/healthprobe.go}
go=${GO:-$(command -v go || echo /usr/lib/go-1.19/bin/go)}
[ -f "$source_go" ] || { echo "build.sh: reference not found at $source_go (set REFERENCE_GO)" >&2; exit 1; }
[ -x "$go" ] || { echo "build.sh: no Go toolchain (apt-get install golang-1.19-go, or set GO)" >&2; exit 1; }

out=$root/target/reference
mod=$out/src
rm -rf "$mod" && mkdir -p "$mod/rtmanager/internal/healthprobe" "$mod/rtmanager/cmd" "$mod/internal" "$out/bin"
printf 'module galaxy\n\ngo 1.19\n' > "$mod/go.mod"
cp -r "$here/stubs/domain" "$here/stubs/logging" "$here/stubs/ports" "$here/stubs/telemetry" "$mod/rtmanager/internal/"
cp -r "$here/stubs/slog" "$mod/internal/"
cp "$here/stubs/harness.go" "$mod/rtmanager/internal/healthprobe/"
sed 's#"log/slog"#slog "galaxy/internal/slog"#' "$source_go" > "$mod/rtmanager/internal/healthprobe/healthprobe.go"
cp -r "$here/cmd/refreplay" "$here/cmd/refrun" "$mod/rtmanager/cmd/"
cd "$mod"
GOFLAGS=-mod=mod GOPROXY=off GOCACHE=${GOCACHE:-$out/gocache} "$go" build -o "$out/bin/refreplay" ./rtmanager/cmd/refreplay
GOFLAGS=-mod=mod GOPROXY=off GOCACHE=${GOCACHE:-$out/gocache} "$go" build -o "$out/bin/refrun" ./rtmanager/cmd/refrun
mkdir -p "$mod/fleet" && cp "$here/fleet/main.go" "$mod/fleet/"
GOFLAGS=-mod=mod GOPROXY=off GOCACHE=${GOCACHE:-$out/gocache} "$go" build -o "$out/bin/fleet" ./fleet
echo "built $out/bin/refreplay, $out/bin/refrun and $out/bin/fleet from $source_go"
