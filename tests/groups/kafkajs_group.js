// KafkaJS consumer group: join, consume every record, commit, leave. Run by
// test_kafkajs_group.py with the broker address and the record count.
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [broker, count] = [process.argv[2], Number(process.argv[3])];
  const kafka = new Kafka({ clientId: 'kjs', brokers: [broker], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: 'kjs', numPartitions: 3 }] });
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ key: String(i), value: String(i) });
  await producer.send({ topic: 'kjs', messages });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: 'kjs-group', sessionTimeout: 10000 });
  const seen = new Set();
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => { joined = true; });
  await consumer.connect();
  await consumer.subscribe({ topic: 'kjs', fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => { seen.add(message.value.toString()); } });
  const deadline = Date.now() + 60000;
  while (seen.size < count && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
  await consumer.disconnect();  // commits and sends LeaveGroup

  const offsets = await admin.fetchOffsets({ groupId: 'kjs-group', topics: ['kjs'] });
  const committed = offsets[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
  const groups = await admin.describeGroups(['kjs-group']);
  await admin.disconnect();
  const state = groups.groups[0].state;
  console.log(JSON.stringify({ joined, seen: seen.size, committed, state }));
  if (!joined || seen.size !== count || committed !== count || state !== 'Empty') process.exit(1);
}
main().catch(e => { console.error(e); process.exit(2); });
