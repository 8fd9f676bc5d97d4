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

# wait_for_sluiced NAME PORT PID LOG: waits up to 10 s for the sluiced started as PID to listen
# on 127.0.0.1:PORT; exits 1 with a message naming NAME and LOG if it stops or never listens.
wait_for_sluiced() {
  local name=$1 port=$2 pid=$3 log=$4
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$name: sluiced stopped (see $log)" >&2; exit 1; }
    sleep 0.1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
    { echo "$name: sluiced does not listen on $port after 10 s (see $log)" >&2; exit 1; }
}
