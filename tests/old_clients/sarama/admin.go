package main

// sarama VERSION admin BROKER TOPIC: sarama's ClusterAdmin at that Kafka version (0.11.0.0 or
// later), each call checked against what Kafka answers: CreateTopics (v1 or v2 by version,
// with a config, again for TOPIC_ALREADY_EXISTS, validate-only), Metadata v4/v5,
// DescribeConfigs and AlterConfigs v0, CreatePartitions v0 (1.0.0 and later), DeleteRecords v0
// (one broker: sarama sends it to the controller, not to each partition's leader), CreateAcls,
// DescribeAcls and DeleteAcls, ListGroups, DescribeGroups and OffsetFetch of a group the offset
// manager committed to, and DeleteTopics. Prints a line per call that passed; the first
// surprise exits 1.

import (
	"fmt"
	"time"

	"github.com/Shopify/sarama"
)

func runAdmin(cfg *sarama.Config, broker, topic string) {
	if !cfg.Version.IsAtLeast(sarama.V0_11_0_0) {
		die("sarama's ClusterAdmin needs Version 0.11.0.0 or later (DescribeConfigs, and " +
			"Metadata v4, which does not create the topics it describes)")
	}
	must := func(what string, err error) {
		if err != nil {
			die("%s: %v", what, err)
		}
		fmt.Println("ok " + what)
	}
	admin, err := sarama.NewClusterAdmin([]string{broker}, cfg)
	must("NewClusterAdmin", err)
	defer admin.Close()
	atLeast1 := cfg.Version.IsAtLeast(sarama.V1_0_0_0)

	hour := "3600000"
	must("CreateTopic", admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2,
		ReplicationFactor: 1, ConfigEntries: map[string]*string{"retention.ms": &hour}}, false))
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)
	if terr, ok := err.(*sarama.TopicError); !ok || terr.Err != sarama.ErrTopicAlreadyExists {
		die("CreateTopic of an existing topic: %v, not TOPIC_ALREADY_EXISTS", err)
	}
	fmt.Println("ok CreateTopic again: TOPIC_ALREADY_EXISTS")
	must("CreateTopic validate-only", admin.CreateTopic(topic+"-not", &sarama.TopicDetail{
		NumPartitions: 1, ReplicationFactor: 1}, true))

	partitions := func(name string) (int, error) {
		md, err := admin.DescribeTopics([]string{name})
		if err != nil {
			return 0, err
		}
		if len(md) != 1 {
			return 0, fmt.Errorf("%d topics described", len(md))
		}
		if md[0].Err != sarama.ErrNoError {
			return 0, md[0].Err
		}
		return len(md[0].Partitions), nil
	}
	if n, err := partitions(topic); err != nil || n != 2 {
		die("DescribeTopics: %d partitions (%v), not 2", n, err)
	}
	if _, err := partitions(topic + "-not"); err != sarama.ErrUnknownTopicOrPartition {
		die("the validate-only topic: %v, not UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	fmt.Println("ok DescribeTopics")
	topics, err := admin.ListTopics()
	must("ListTopics", err)
	if d, ok := topics[topic]; !ok || d.NumPartitions != 2 || d.ReplicationFactor != 1 ||
		d.ConfigEntries["retention.ms"] == nil || *d.ConfigEntries["retention.ms"] != hour {
		die("ListTopics: %s is %+v", topic, topics[topic])
	}
	if atLeast1 {
		must("CreatePartitions", admin.CreatePartitions(topic, 3, nil, false))
		if n, err := partitions(topic); err != nil || n != 3 {
			die("after CreatePartitions: %d partitions (%v), not 3", n, err)
		}
	}

	client, err := sarama.NewClient([]string{broker}, cfg)
	must("NewClient", err)
	defer client.Close()
	pcfg := *cfg
	pcfg.Producer.Return.Successes = true
	pcfg.Producer.RequiredAcks = sarama.WaitForAll
	pcfg.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer([]string{broker}, &pcfg)
	must("NewSyncProducer", err)
	for i := 0; i < 20; i++ {
		_, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic,
			Partition: int32(i % 2), Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))})
		if err != nil {
			die("produce: %v", err)
		}
	}
	producer.Close()
	must("DeleteRecords", admin.DeleteRecords(topic, map[int32]int64{0: 4, 1: 1}))
	for p, want := range map[int32]int64{0: 4, 1: 1} {
		if o, err := client.GetOffset(topic, p, sarama.OffsetOldest); err != nil || o != want {
			die("partition %d starts at %d (%v) after DeleteRecords, not %d", p, o, err, want)
		}
	}

	describe := func(name string) sarama.ConfigEntry {
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource,
			Name: topic, ConfigNames: []string{name}})
		if err != nil || len(entries) != 1 {
			die("DescribeConfig %s: %d entries (%v)", name, len(entries), err)
		}
		return entries[0]
	}
	if e := describe("retention.ms"); e.Value != hour || e.Default {
		die("DescribeConfig: retention.ms is %+v", e)
	}
	if e := describe("cleanup.policy"); e.Value != "delete" || !e.Default {
		die("DescribeConfig: cleanup.policy is %+v", e)
	}
	fmt.Println("ok DescribeConfig")
	twoHours := "7200000"
	must("AlterConfig", admin.AlterConfig(sarama.TopicResource, topic,
		map[string]*string{"retention.ms": &twoHours}, false))
	if e := describe("retention.ms"); e.Value != twoHours {
		die("after AlterConfig: retention.ms is %+v", e)
	}

	resource := sarama.Resource{ResourceType: sarama.AclResourceTopic, ResourceName: topic,
		ResoucePatternType: sarama.AclPatternLiteral}
	must("CreateACL", admin.CreateACL(resource, sarama.Acl{Principal: "User:alice", Host: "*",
		Operation: sarama.AclOperationRead, PermissionType: sarama.AclPermissionAllow}))
	name := topic
	filter := sarama.AclFilter{ResourceType: sarama.AclResourceTopic, ResourceName: &name,
		ResourcePatternTypeFilter: sarama.AclPatternAny, Operation: sarama.AclOperationAny,
		PermissionType: sarama.AclPermissionAny}
	acls, err := admin.ListAcls(filter)
	if err != nil || len(acls) != 1 || len(acls[0].Acls) != 1 ||
		acls[0].Acls[0].Principal != "User:alice" {
		die("ListAcls: %+v (%v)", acls, err)
	}
	fmt.Println("ok ListAcls")
	matched, err := admin.DeleteACL(filter, false)
	if err != nil || len(matched) != 1 {
		die("DeleteACL: %d matched (%v)", len(matched), err)
	}
	if acls, err := admin.ListAcls(filter); err != nil || len(acls) != 0 {
		die("ListAcls after DeleteACL: %+v (%v)", acls, err)
	}
	fmt.Println("ok DeleteACL")

	group := topic + "-group"
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	must("NewOffsetManager", err)
	pom, err := om.ManagePartition(topic, 0)
	must("ManagePartition", err)
	pom.MarkOffset(5, "meta")
	pom.Close()
	must("commit (offset manager close)", om.Close())
	groups, err := admin.ListConsumerGroups()
	if _, ok := groups[group]; err != nil || !ok {
		die("ListConsumerGroups: %v (%v), no %s", groups, err, group)
	}
	fmt.Println("ok ListConsumerGroups")
	desc, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil || len(desc) != 1 || desc[0].Err != sarama.ErrNoError || desc[0].State != "Empty" {
		die("DescribeConsumerGroups: %+v (%v)", desc, err)
	}
	fmt.Println("ok DescribeConsumerGroups")
	offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1}})
	must("ListConsumerGroupOffsets", err)
	if b := offsets.GetBlock(topic, 0); b == nil || b.Offset != 5 || b.Metadata != "meta" {
		die("committed offset of partition 0: %+v", b)
	}
	if b := offsets.GetBlock(topic, 1); b == nil || b.Offset != -1 {
		die("committed offset of partition 1 (none): %+v", b)
	}

	must("DeleteTopic", admin.DeleteTopic(topic))
	for i := 0; ; i++ {
		if _, err := partitions(topic); err == sarama.ErrUnknownTopicOrPartition {
			break
		} else if i == 50 {
			die("after DeleteTopic: %v, not UNKNOWN_TOPIC_OR_PARTITION", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Println("ok topic gone")
}
