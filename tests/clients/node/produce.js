'use strict';
// Sends COUNT messages with keys and tags through the real pure-JavaScript RocketMQ 4.x client
// (npm `ali-ons@3.12.0`) and prints one JSON line per acknowledged message.
//
// Usage: node produce.js NAMESRV_ADDR TOPIC COUNT PREFIX
//
// Message i has body "PREFIX-i", keys "PREFIX-key-i" and tag "TagA" for even i, "TagB" for odd.
// Each acknowledged send prints {"i": i, "msgId": ..., "status": ..., "queueId": ...,
// "queueOffset": ...}; a failed send prints {"i": i, "error": ...} and the script exits 1
// after trying the rest. Client errors and warnings go to stderr, and so does, last, one JSON
// line {"wire": {CODE: {"sent": n, "answers": {RESPONSE_CODE: n}}}} naming every request code
// the client sent. FERROCKET_NODE_TRACE=1 also prints the client's info and debug logs.

const { Producer, Message } = require('ali-ons');
const RemotingClient = require('ali-ons/lib/remoting_client');
const httpclient = require('urllib');
const { format } = require('util');

const TRACE = process.env.FERROCKET_NODE_TRACE === '1';

// Every request the client sends, by code, with the response codes it got back.
const wire = {};
function record(code, answer) {
  const entry = wire[code] || (wire[code] = { sent: 0, answers: {} });
  if (answer === undefined) {
    entry.sent += 1;
  } else {
    entry.answers[answer] = (entry.answers[answer] || 0) + 1;
  }
}
const invoke = RemotingClient.prototype.invoke;
RemotingClient.prototype.invoke = async function(addr, command, timeout) {
  record(command.code);
  try {
    const response = await invoke.call(this, addr, command, timeout);
    record(command.code, response.code);
    return response;
  } catch (err) {
    record(command.code, err.name || 'Error');
    throw err;
  }
};
const invokeOneway = RemotingClient.prototype.invokeOneway;
RemotingClient.prototype.invokeOneway = async function(addr, command) {
  record(command.code);
  record(command.code, 'oneway');
  return invokeOneway.call(this, addr, command);
};

// ali-ons logs printf-style (util.format).
const logger = {
  info: (...args) => TRACE && console.error('[info] ' + format(...args)),
  debug: (...args) => TRACE && console.error('[debug] ' + format(...args)),
  warn: (...args) => console.error('[warn] ' + format(...args)),
  error: (...args) => console.error('[error] ' + format(...args)),
};

function usage() {
  console.error('usage: node produce.js NAMESRV_ADDR TOPIC COUNT PREFIX');
  process.exit(2);
}

// Resolves the topic's route before the first send. For a topic the name server does not know
// yet, ali-ons 3.12 cannot send at all: its route lookup throws on TOPIC_NOT_EXIST (17) before
// reaching the fallback to the auto-create key TBW102 that its own code intends
// (MQProducer#tryToFindTopicPublishInfo; ali-sdk/ali-ons issue #90), whereas the Java client
// catches that error and falls back. Apache RocketMQ's name server answers 17 just the same.
// This takes the Java client's path explicitly: route(TBW102), then SEND_MESSAGE_V2 with
// defaultTopic TBW102, on which the broker creates the topic (autoCreateTopicEnable).
async function resolveRoute(producer, topic) {
  try {
    await producer.tryToFindTopicPublishInfo(topic);
    return;
  } catch (err) {
    if (err.code !== 17) {
      throw err;
    }
  }
  console.error(`[produce.js] topic ${topic} unknown to the name server: ` +
    `sending with the route of ${producer.createTopicKey} for auto-creation`);
  await producer._mqClient.updateTopicRouteInfoFromNameServer(topic, true, producer);
}

async function main() {
  const [ namesrv, topic, countText, prefix ] = process.argv.slice(2);
  const count = Number(countText);
  if (process.argv.length !== 6 || !Number.isInteger(count) || count < 0) {
    usage();
  }
  const producer = new Producer({
    httpclient,
    logger,
    nameSrv: namesrv,
    producerGroup: 'ferrocket-e2e-node-producer',
    sendMsgTimeout: 5000,
  });
  producer.on('error', err => console.error('[producer error]', err && err.stack || err));
  await producer.ready();

  await resolveRoute(producer, topic);

  let failures = 0;
  for (let i = 0; i < count; i++) {
    const message = new Message(topic, i % 2 === 0 ? 'TagA' : 'TagB', `${prefix}-${i}`);
    message.keys = [ `${prefix}-key-${i}` ]; // ali-ons joins an array of keys
    try {
      const result = await producer.send(message);
      console.log(JSON.stringify({
        i,
        msgId: result.msgId,
        status: result.sendStatus,
        queueId: result.messageQueue && Number(result.messageQueue.queueId),
        queueOffset: result.queueOffset,
      }));
      if (result.sendStatus !== 'SEND_OK') {
        failures += 1;
      }
    } catch (err) {
      failures += 1;
      console.log(JSON.stringify({ i, error: `${err.name}: ${err.message}`, code: err.code }));
    }
  }

  await producer.close();
  // The client's shared internal producer keeps the connections and timers alive.
  if (Producer.defaultProducer) {
    await Producer.defaultProducer.close();
  }
  return failures ? 1 : 0;
}

main().then(
  code => {
    console.error(JSON.stringify({ wire }));
    process.exit(code);
  },
  err => {
    console.log(JSON.stringify({ error: `${err && err.name}: ${err && err.message}` }));
    console.error(err && err.stack || err);
    console.error(JSON.stringify({ wire }));
    process.exit(1);
  }
);
