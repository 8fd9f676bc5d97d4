// kafka-go 0.2.1 (Debian's golang-github-segmentio-kafka-go-dev) against Sluice: Produce v2
// with magic 1 message sets, a consumer group on Fetch v2, OffsetCommit v2, OffsetFetch v1.
//
//	kafkago produce BROKER TOPIC N          N keyed records k<i>=v<i>, snappy, hash partitioner
//	kafkago consume BROKER TOPIC GROUP N    reads N records in the group, commits them, exits;
//	                                        prints "partition offset key value" per record
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	kafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/snappy"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 5 {
		die("usage: kafkago produce|consume BROKER TOPIC [GROUP] N")
	}
	broker, topic := os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	switch os.Args[1] {
	case "produce":
		n, _ := strconv.Atoi(os.Args[4])
		w := kafka.NewWriter(kafka.WriterConfig{Brokers: []string{broker}, Topic: topic,
			Balancer: &kafka.Hash{}, BatchSize: 500, BatchTimeout: 10 * time.Millisecond,
			CompressionCodec: snappy.NewCompressionCodec(), RequiredAcks: -1})
		msgs := make([]kafka.Message, 0, 1000)
		for i := 0; i < n; i++ {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("k%d", i)),
				Value: []byte(fmt.Sprintf("v%d", i))})
			if len(msgs) == cap(msgs) || i == n-1 {
				if err := w.WriteMessages(ctx, msgs...); err != nil {
					die("produce: %v", err)
				}
				msgs = msgs[:0]
			}
		}
		if err := w.Close(); err != nil {
			die("close: %v", err)
		}
	case "consume":
		group := os.Args[4]
		n, _ := strconv.Atoi(os.Args[5])
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic,
			GroupID: group, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond,
			HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second})
		got := make([]kafka.Message, 0, n)
		for len(got) < n {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				die("fetch after %d records: %v", len(got), err)
			}
			got = append(got, m)
			fmt.Printf("%d %d %s %s\n", m.Partition, m.Offset, m.Key, m.Value)
		}
		if err := r.CommitMessages(ctx, got...); err != nil {
			die("commit: %v", err)
		}
		if err := r.Close(); err != nil {
			die("close: %v", err)
		}
	default:
		die("unknown mode %s", os.Args[1])
	}
}
