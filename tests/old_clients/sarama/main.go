// sarama 1.22.1 (Debian's golang-github-shopify-sarama-dev) against Sluice at a given Kafka
// version: 0.10.2 (magic 1 message sets, Fetch v3, OffsetCommit v2) or 2.0.0 (record batches).
//
//	sarama VERSION produce BROKER TOPIC N         N keyed records k<i>=v<i>, lz4, hash partitioner
//	sarama VERSION consume BROKER TOPIC GROUP N   reads N records in the group, marks them, and
//	                                              exits (offsets are committed on close); prints
//	                                              "partition offset key value" per record
//	sarama VERSION manual BROKER TOPIC GROUP N    reads N records of partition 0 from the group's
//	                                              committed offset with the offset manager (what
//	                                              sarama does at its default Version 0.8.2:
//	                                              Fetch v0, OffsetCommit v1, OffsetFetch v1),
//	                                              commits, exits
//	sarama VERSION admin BROKER TOPIC             ClusterAdmin's calls, checked (admin.go)
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

type handler struct {
	mu     sync.Mutex
	want   int
	got    int
	cancel context.CancelFunc
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.mu.Lock()
		if h.got < h.want {
			fmt.Printf("%d %d %s %s\n", m.Partition, m.Offset, m.Key, m.Value)
			s.MarkMessage(m, "")
			h.got++
			if h.got == h.want {
				h.cancel()
			}
		}
		h.mu.Unlock()
	}
	return nil
}

func main() {
	if len(os.Args) < 5 || (os.Args[2] != "admin" && len(os.Args) < 6) {
		die("usage: sarama VERSION produce|consume|manual BROKER TOPIC [GROUP] N, or " +
			"sarama VERSION admin BROKER TOPIC")
	}
	version, err := sarama.ParseKafkaVersion(os.Args[1])
	if err != nil {
		die("version: %v", err)
	}
	broker, topic := os.Args[3], os.Args[4]
	cfg := sarama.NewConfig()
	cfg.Version = version
	cfg.ClientID = "sarama-" + os.Args[1]
	switch os.Args[2] {
	case "produce":
		n, _ := strconv.Atoi(os.Args[5])
		cfg.Producer.Return.Successes = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Compression = sarama.CompressionLZ4
		cfg.Producer.Partitioner = sarama.NewHashPartitioner
		cfg.Producer.Flush.Messages = 500
		cfg.Producer.Flush.Frequency = 10 * time.Millisecond
		p, err := sarama.NewSyncProducer([]string{broker}, cfg)
		if err != nil {
			die("producer: %v", err)
		}
		msgs := make([]*sarama.ProducerMessage, 0, 1000)
		for i := 0; i < n; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic,
				Key:   sarama.StringEncoder(fmt.Sprintf("k%d", i)),
				Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))})
			if len(msgs) == cap(msgs) || i == n-1 {
				if err := p.SendMessages(msgs); err != nil {
					die("produce: %v", err)
				}
				msgs = msgs[:0]
			}
		}
		if err := p.Close(); err != nil {
			die("close: %v", err)
		}
	case "consume":
		group := os.Args[5]
		n, _ := strconv.Atoi(os.Args[6])
		cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
		cfg.Consumer.Return.Errors = false
		cfg.Consumer.Fetch.Default = 64 << 10
		cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
		g, err := sarama.NewConsumerGroup([]string{broker}, group, cfg)
		if err != nil {
			die("group: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		h := &handler{want: n, cancel: cancel}
		timer := time.AfterFunc(90*time.Second, func() {
			die("timed out with %d of %d records", h.got, n)
		})
		defer timer.Stop()
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil {
				die("consume: %v", err)
			}
		}
		if err := g.Close(); err != nil {
			die("close: %v", err)
		}
	case "manual":
		group := os.Args[5]
		n, _ := strconv.Atoi(os.Args[6])
		cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
		client, err := sarama.NewClient([]string{broker}, cfg)
		if err != nil {
			die("client: %v", err)
		}
		om, err := sarama.NewOffsetManagerFromClient(group, client)
		if err != nil {
			die("offset manager: %v", err)
		}
		pom, err := om.ManagePartition(topic, 0)
		if err != nil {
			die("manage partition: %v", err)
		}
		next, _ := pom.NextOffset()
		consumer, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			die("consumer: %v", err)
		}
		pc, err := consumer.ConsumePartition(topic, 0, next)
		if err != nil {
			die("consume partition at %d: %v", next, err)
		}
		timeout := time.After(90 * time.Second)
		for got := 0; got < n; got++ {
			select {
			case m := <-pc.Messages():
				fmt.Printf("%d %d %s %s\n", m.Partition, m.Offset, m.Key, m.Value)
				pom.MarkOffset(m.Offset+1, "")
			case <-timeout:
				die("timed out with %d of %d records", got, n)
			}
		}
		pc.Close()
		if err := pom.Close(); err != nil {
			die("close partition offsets: %v", err)
		}
		if err := om.Close(); err != nil { // flushes the commit
			die("close offset manager: %v", err)
		}
		client.Close()
	case "admin":
		runAdmin(cfg, broker, topic)
	default:
		die("unknown mode %s", os.Args[2])
	}
}
