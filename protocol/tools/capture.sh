#!/usr/bin/env bash
# Records the first requests of real Kafka clients into protocol/testdata/captured/*.hex.
# A one-off step (see protocol/testdata/captured/README.md); the tests read the committed files.
# Payloads are repetitive so that the clients really compress them (both skip compression
# when it does not shrink the batch). Needs kcat and Debian's python3-kafka (scripts/setup installs both).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
OUT=$SLUICE_ROOT/protocol/testdata/captured
configure_release
ninja -C "$RELEASE_DIR" codec_capture
mkdir -p "$OUT"
rm -f "$OUT"/*.hex
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# capture PREFIX NOTE COMMAND...: runs COMMAND with $PORT set against a fresh recorder.
capture() {
  local prefix=$1 note=$2
  shift 2
  rm -f "$WORK/port"
  "$RELEASE_DIR/protocol/codec_capture" --out "$OUT" --prefix "$prefix" --note "$note" \
    --port-file "$WORK/port" >"$WORK/$prefix.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do [[ -s $WORK/port ]] && break; sleep 0.1; done
  PORT=$(cat "$WORK/port")
  export PORT
  timeout 30 "$@" || echo "($prefix: client exited with $?)"
  sleep 0.5
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  cat "$WORK/$prefix.log"
}

kcat_version=$(kcat -V 2>&1 | sed -n 's/^Version \([0-9.]*\).*\(librdkafka [0-9.]*\).*/kcat \1 (\2)/p')
capture kcat-zstd "$kcat_version: kcat -P -t t -z zstd" \
  sh -c 'yes hello-from-kcat | head -200 | kcat -P -b 127.0.0.1:$PORT -t t -z zstd'
capture kcat-gzip "$kcat_version: kcat -P -t t -z gzip" \
  sh -c 'yes hello-from-kcat | head -200 | kcat -P -b 127.0.0.1:$PORT -t t -z gzip -k key1'
capture kcat-metadata "$kcat_version: kcat -L" sh -c 'kcat -L -b 127.0.0.1:$PORT >/dev/null'

py_version=$(/usr/bin/python3 -c 'import kafka; print(kafka.__version__)')
capture kafka-python-producer "kafka-python $py_version: KafkaProducer(compression_type='gzip')" \
  /usr/bin/python3 -c '
import os
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers="127.0.0.1:" + os.environ["PORT"], compression_type="gzip")
p.send("t", key=b"k", value=b"hello kafka-python " * 40).get(timeout=10)
p.close()'
capture kafka-python-consumer "kafka-python $py_version: KafkaConsumer().topics()" \
  /usr/bin/python3 -c '
import os
from kafka import KafkaConsumer
c = KafkaConsumer(bootstrap_servers="127.0.0.1:" + os.environ["PORT"])
print(c.topics())
c.close()'
ls "$OUT"
