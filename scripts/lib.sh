# Shared by the scripts: the repo root and the two build folders.
# shellcheck shell=bash
SLUICE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE_BUILD=${SLUICE_BUILD:-$SLUICE_ROOT/build}
RELEASE_DIR=$SLUICE_BUILD/release
CHECKED_DIR=$SLUICE_BUILD/checked

# configure_release / configure_checked: configure once; later runs reuse the folder.
configure_release() {
  if [[ ! -f $RELEASE_DIR/build.ninja ]]; then
    cmake -S "$SLUICE_ROOT" -B "$RELEASE_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  fi
}
configure_checked() {
  if [[ ! -f $CHECKED_DIR/build.ninja ]]; then
    CC=clang CXX=clang++ cmake -S "$SLUICE_ROOT" -B "$CHECKED_DIR" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=ON -DSLUICE_FUZZ=ON \
      -DSLUICE_BENCHMARKS=OFF
  fi
}
