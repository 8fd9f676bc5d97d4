// optiopay/kafka 2.1.1 (Debian's golang-github-optiopay-kafka-dev) against Sluice: a client
// of its own protocol code that picks versions from ApiVersions (v0/v1) within its own
// ranges: Metadata v5, CreateTopics, Produce v2 with magic 1 message sets (gzip here), Fetch v5
// (record batches back), ListOffsets v2. Not its OffsetCoordinator: it negotiates
// FindCoordinator v1 but encodes a v0 body (no key_type), which Kafka 0.11 and later refuse
// as malformed, and Sluice too.
//
//	optiopay produce BROKER TOPIC N   creates TOPIC (3 partitions) unless it exists, then N
//	                                  keyed records k<i>=v<i>, FNV hash partitioning, acks all
//	optiopay consume BROKER TOPIC     reads every partition from its earliest offset to the
//	                                  end ListOffsets gives; prints "partition offset key value"
package main

import (
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"time"

	"github.com/optiopay/kafka/v2"
	"github.com/optiopay/kafka/v2/proto"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 4 {
		die("usage: optiopay produce BROKER TOPIC N | consume BROKER TOPIC")
	}
	addr, topic := os.Args[2], os.Args[3]
	conf := kafka.NewBrokerConf("sluice-optiopay")
	broker, err := kafka.Dial([]string{addr}, conf)
	if err != nil {
		die("dial: %v", err)
	}
	if os.Args[1] == "produce" { // CreateTopics v0 through the controller; "exists" is fine
		resp, err := broker.CreateTopic([]proto.TopicInfo{{Topic: topic, NumPartitions: 3,
			ReplicationFactor: 1}}, 10*time.Second, false)
		if err != nil {
			die("create topic %s: %v", topic, err)
		}
		for _, e := range resp.TopicErrors {
			if e.ErrorCode != 0 && e.ErrorCode != 36 { // 36: TOPIC_ALREADY_EXISTS
				die("create topic %s: error code %d", e.Topic, e.ErrorCode)
			}
		}
	}
	// The broker caches the metadata it read when it dialled: dial again until it has the topic.
	var partitions int32
	for i := 0; ; i++ {
		if partitions, err = broker.PartitionCount(topic); err == nil && partitions > 0 {
			break
		} else if i == 50 {
			die("partition count of %s: %v", topic, err)
		}
		broker.Close()
		time.Sleep(100 * time.Millisecond)
		if broker, err = kafka.Dial([]string{addr}, conf); err != nil {
			die("dial: %v", err)
		}
	}
	defer broker.Close()
	switch os.Args[1] {
	case "produce":
		n, _ := strconv.Atoi(os.Args[4])
		pconf := kafka.NewProducerConf()
		pconf.Compression = proto.CompressionNone
		pconf.RequiredAcks = proto.RequiredAcksAll
		producer := broker.Producer(pconf)
		pending := make([][]*proto.Message, partitions)
		flush := func(p int32) {
			if len(pending[p]) == 0 {
				return
			}
			if _, err := producer.Produce(topic, p, pending[p]...); err != nil {
				die("produce to partition %d: %v", p, err)
			}
			pending[p] = pending[p][:0]
		}
		for i := 0; i < n; i++ {
			key := []byte(fmt.Sprintf("k%d", i))
			h := fnv.New32a()
			h.Write(key)
			p := int32(h.Sum32() % uint32(partitions))
			pending[p] = append(pending[p], &proto.Message{Key: key,
				Value: []byte(fmt.Sprintf("v%d", i))})
			if len(pending[p]) == 500 {
				flush(p)
			}
		}
		for p := int32(0); p < partitions; p++ {
			flush(p)
		}
	case "consume":
		// Every partition from its earliest offset to its end (ErrNoData after 4 empty
		// fetches), checked against ListOffsets' earliest and latest.
		for p := int32(0); p < partitions; p++ {
			earliest, err := broker.OffsetEarliest(topic, p)
			if err != nil {
				die("earliest offset of partition %d: %v", p, err)
			}
			latest, err := broker.OffsetLatest(topic, p)
			if err != nil {
				die("latest offset of partition %d: %v", p, err)
			}
			cconf := kafka.NewConsumerConf(topic, p)
			cconf.RetryLimit = 4
			cconf.StartOffset = kafka.StartOffsetOldest
			consumer, err := broker.Consumer(cconf)
			if err != nil {
				die("consumer of partition %d: %v", p, err)
			}
			next := earliest
			for {
				m, err := consumer.Consume()
				if err == kafka.ErrNoData {
					break
				} else if err != nil {
					die("consume partition %d: %v", p, err)
				}
				if m.Offset != next {
					die("partition %d: offset %d where %d was next", p, m.Offset, next)
				}
				fmt.Printf("%d %d %s %s\n", p, m.Offset, m.Key, m.Value)
				next++
			}
			if next != latest {
				die("partition %d: read up to %d, ListOffsets says the end is %d", p, next, latest)
			}
		}
	default:
		die("unknown command %s", os.Args[1])
	}
}
