/* librdkafka side of scripts/perf-producer: the same workload as producer/producer_perf.cc.
 *   rdkafka_producer_perf BROKERS TOPIC RECORDS RECORD_BYTES COMPRESSION ACKS */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long failed = 0;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) failed++;
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v) {
  char err[512];
  if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "rdkafka_producer_perf: %s\n", err);
    exit(2);
  }
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: rdkafka_producer_perf BROKERS TOPIC RECORDS RECORD_BYTES COMPRESSION ACKS\n");
    return 2;
  }
  long records = atol(argv[3]);
  size_t size = (size_t)atol(argv[4]);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char err[512];
  set(conf, "bootstrap.servers", argv[1]);
  set(conf, "compression.codec", argv[5]);
  set(conf, "acks", strcmp(argv[6], "all") == 0 ? "-1" : argv[6]);
  set(conf, "enable.idempotence", strcmp(argv[6], "all") == 0 ? "true" : "false");
  set(conf, "linger.ms", "5");
  set(conf, "queue.buffering.max.kbytes", "65536");
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "rdkafka_producer_perf: %s\n", err);
    return 1;
  }
  char *payload = malloc(size);
  for (size_t i = 0; i < size; ++i) payload[i] = (char)('a' + (i * 7 + i / 64) % 26);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < records; ++i) {
    snprintf(payload, 12, "%011ld", i);
    for (;;) {
      rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]),
                                                RD_KAFKA_V_VALUE(payload, size),
                                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      if (e) {
        fprintf(stderr, "rdkafka_producer_perf: %s\n", rd_kafka_err2str(e));
        return 1;
      }
      break;
    }
    rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 120000);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  rd_kafka_destroy(rk);
  if (failed) {
    fprintf(stderr, "rdkafka_producer_perf: %ld records failed\n", failed);
    return 1;
  }
  printf("records=%ld bytes=%ld seconds=%.3f records_per_s=%.0f mib_per_s=%.1f\n", records,
         records * (long)size, seconds, records / seconds, records * (double)size / seconds / (1 << 20));
  free(payload);
  return 0;
}
