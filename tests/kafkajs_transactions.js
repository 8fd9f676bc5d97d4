// KafkaJS 2.2.4 transactions against sluiced: a transactional producer commits one
// transaction, aborts one (its records acknowledged, so in the log), and commits one holding
// a group's offsets (sendOffsets); a group consumer (read_committed, KafkaJS's default) sees
// exactly the committed records, and the group's offsets are the ones committed.
// Usage: node kafkajs_transactions.js HOST:PORT
'use strict'
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap] = process.argv.slice(2)
const TOPIC = 'kafkajs-txn'
const kafka = new Kafka({ clientId: 'sluice-it-txn', brokers: [bootstrap], logLevel: logLevel.WARN })

function fail(msg) {
  console.error('FAIL: ' + msg)
  process.exit(1)
}

function messages(prefix, n) {
  return Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: `${prefix}-${i}` }))
}

async function main() {
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 2 }], waitForLeaders: true })
  const producer = kafka.producer({ transactionalId: 'kafkajs-tx', idempotent: true,
                                    maxInFlightRequests: 1 })
  await producer.connect()

  let txn = await producer.transaction()
  await txn.send({ topic: TOPIC, messages: messages('commit', 50) })
  await txn.commit()

  txn = await producer.transaction()
  await txn.send({ topic: TOPIC, messages: messages('abort', 30) })
  await txn.abort()

  txn = await producer.transaction()
  await txn.send({ topic: TOPIC, messages: messages('offsets', 20) })
  await txn.sendOffsets({ consumerGroupId: 'kafkajs-txn-app',
                          topics: [{ topic: TOPIC, partitions: [{ partition: 0, offset: '7' },
                                                                { partition: 1, offset: '9' }] }] })
  await txn.commit()
  await producer.disconnect()

  // The commit answers once its outcome is logged; the markers that make the offsets the
  // group's follow (as in Kafka), so the offsets are read until they show.
  let got = {}
  for (let tries = 0; tries < 100 && (got[0] !== '7' || got[1] !== '9'); tries++) {
    if (tries > 0) await new Promise((r) => setTimeout(r, 100))
    const offsets = await admin.fetchOffsets({ groupId: 'kafkajs-txn-app', topics: [TOPIC] })
    got = {}
    for (const p of offsets[0].partitions) got[p.partition] = p.offset
  }
  if (got[0] !== '7' || got[1] !== '9') fail('committed offsets ' + JSON.stringify(got))

  const consumer = kafka.consumer({ groupId: 'kafkajs-txn-reader' })
  await consumer.connect()
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true })
  const seen = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.length} records in 60 s`)), 60000)
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.push(message.value.toString())
        if (seen.length >= 70) {
          clearTimeout(timer)
          setTimeout(resolve, 2000)  // anything more (an aborted record) would arrive meanwhile
        }
      },
    }).catch(reject)
  })
  await consumer.disconnect()
  await admin.disconnect()
  if (seen.length !== 70) fail(`read ${seen.length} records, want 70`)
  if (seen.some((v) => v.startsWith('abort'))) fail('an aborted record was read')
  console.log(`transactions: ${seen.length} committed records read, none aborted; offsets committed`)
}

main().catch((e) => fail(e.stack || String(e)))
