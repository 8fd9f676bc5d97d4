// KafkaJS 2.2.4 against sluiced: creates a topic, produces COUNT keyed records with headers
// (half of them gzip-compressed) and reads every partition back, checking each record.
// Usage: node kafkajs_roundtrip.js HOST:PORT COUNT
//
// KafkaJS's consumer only works through consumer groups; until the broker serves them
// (JoinGroup advertised), records are read with KafkaJS's own Fetch request and decoder
// through its internal cluster object. Once groups are served, a group consumer reads
// everything as well.
'use strict'
const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

const [bootstrap, countArg] = process.argv.slice(2)
const COUNT = Number(countArg || 3000)
const PARTITIONS = 3
const TOPIC = 'kafkajs'
const kafka = new Kafka({ clientId: 'sluice-it', brokers: [bootstrap], logLevel: logLevel.WARN,
                          retry: { retries: 3 } })

function fail(msg) {
  console.error('FAIL: ' + msg)
  process.exit(1)
}

function expected(i) {
  return { key: `k${i}`, value: `value-${i}-${'x'.repeat(i % 50)}`, idx: String(i) }
}

async function produce() {
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const batch = 500
  for (let start = 0; start < COUNT; start += batch) {
    const messages = []
    for (let i = start; i < Math.min(COUNT, start + batch); i++) {
      const e = expected(i)
      messages.push({ key: e.key, value: e.value, headers: { idx: e.idx },
                      timestamp: String(1700000000000 + i) })
    }
    const compression = (start / batch) % 2 ? CompressionTypes.GZIP : CompressionTypes.None
    const res = await producer.send({ topic: TOPIC, acks: -1, compression, messages })
    for (const r of res) {
      if (r.errorCode !== 0) fail(`produce error ${r.errorCode}`)
    }
  }
  await producer.disconnect()
}

function check(message, partition, seen) {
  const i = Number(message.headers.idx.toString())
  const e = expected(i)
  if (message.key.toString() !== e.key) fail(`key of ${i}: ${message.key}`)
  if (message.value.toString() !== e.value) fail(`value of ${i}`)
  if (message.timestamp !== String(1700000000000 + i)) fail(`timestamp of ${i}: ${message.timestamp}`)
  if (seen.has(i)) fail(`record ${i} read twice`)
  seen.set(i, partition)
}

async function readWithFetch(ends) {
  const symbols = Object.getOwnPropertySymbols(kafka)
  const create = symbols.find(s => s.toString() === 'Symbol(private:Kafka:createCluster)')
  if (!create) fail('KafkaJS internals changed: no createCluster')
  const cluster = kafka[create]({ metadataMaxAge: 60000 })
  await cluster.connect()
  await cluster.addTargetTopic(TOPIC)
  const seen = new Map()
  for (let p = 0; p < PARTITIONS; p++) {
    const leader = cluster.findLeaderForPartitions(TOPIC, [p])
    const broker = await cluster.findBroker({ nodeId: Object.keys(leader)[0] })
    let offset = 0
    while (offset < ends[p]) {
      const resp = await broker.fetch({
        replicaId: -1, isolationLevel: 0, maxWaitTime: 100, minBytes: 1, maxBytes: 1 << 20,
        topics: [{ topic: TOPIC, partitions: [{ partition: p, fetchOffset: String(offset),
                                                maxBytes: 1 << 18 }] }] })
      const part = resp.responses[0].partitions[0]
      if (part.errorCode !== 0) fail(`fetch error ${part.errorCode}`)
      for (const m of part.messages) {
        if (Number(m.offset) < offset) continue  // a batch may start before the fetch offset
        if (Number(m.offset) !== offset) fail(`partition ${p}: offset ${m.offset}, wanted ${offset}`)
        check(m, p, seen)
        offset++
      }
    }
  }
  await cluster.disconnect()
  return seen
}

async function readWithGroup(ends) {
  const consumer = kafka.consumer({ groupId: 'kafkajs-it', maxWaitTimeInMs: 100 })
  await consumer.connect()
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true })
  const seen = new Map()
  const total = ends.reduce((a, b) => a + b, 0)
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`group consumer read ${seen.size} of ${total}`)), 60000)
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        check(message, partition, seen)
        if (seen.size === total) {
          clearTimeout(timer)
          resolve()
        }
      },
    }).catch(reject)
  })
  await consumer.disconnect()
  return seen
}

async function main() {
  const admin = kafka.admin()
  await admin.connect()
  if (!await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: PARTITIONS }],
                                  waitForLeaders: true })) {
    fail('createTopics returned false')
  }
  await produce()
  const offsets = await admin.fetchTopicOffsets(TOPIC)
  const ends = []
  for (const o of offsets) ends[o.partition] = Number(o.high)
  if (ends.reduce((a, b) => a + b, 0) !== COUNT) fail(`high watermarks ${ends}`)
  const seen = await readWithFetch(ends)
  if (seen.size !== COUNT) fail(`read ${seen.size} of ${COUNT}`)
  console.log(`kafkajs: produced ${COUNT} records to ${PARTITIONS} partitions and read each ` +
              'back with KafkaJS Fetch')
  if (process.env.SLUICE_GROUPS_SERVED === '1') {
    const got = await readWithGroup(ends)
    if (got.size !== COUNT) fail(`group consumer read ${got.size} of ${COUNT}`)
    console.log('kafkajs: a group consumer read them all too')
  } else {
    console.log('kafkajs: group consumer not run (the broker does not serve JoinGroup)')
  }
  await admin.disconnect()
}

main().catch(e => fail(e.stack || String(e)))
