'use strict';
// Consumes a topic with the real pure-JavaScript RocketMQ 4.x push consumer (npm
// `ali-ons@3.12.0`) and prints one JSON line per message received:
// {"body", "keys", "tags", "queueId", "queueOffset", "msgId"}.
//
// Usage: node consume.js NAMESRV_ADDR TOPIC GROUP EXPECTED SECONDS
//
// Subscribes to TOPIC with "*". Stops after EXPECTED messages or SECONDS seconds, whichever
// comes first, then waits a little for stragglers (so redeliveries are seen), closes the
// consumer (committing its offsets, unregistering from the broker), prints
// {"done": true, "count": N} and exits 0. Client errors and warnings go to stderr, and so
// does, last, one JSON line {"wire": {CODE: {"sent": n, "answers": {RESPONSE_CODE: n}}}}
// naming every request code the client sent. FERROCKET_NODE_TRACE=1 also prints the
// client's info and debug logs.

const { Consumer, Producer } = require('ali-ons');
const RemotingClient = require('ali-ons/lib/remoting_client');
const httpclient = require('urllib');
const { format } = require('util');

const TRACE = process.env.FERROCKET_NODE_TRACE === '1';
const QUIET_AFTER_EXPECTED_MS = 3000;
const CLOSE_MAX_MS = 10000;

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

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

function usage() {
  console.error('usage: node consume.js NAMESRV_ADDR TOPIC GROUP EXPECTED SECONDS');
  process.exit(2);
}

async function main() {
  const [ namesrv, topic, group, expectedText, secondsText ] = process.argv.slice(2);
  const expected = Number(expectedText);
  const seconds = Number(secondsText);
  if (process.argv.length !== 7 || !Number.isInteger(expected) || !(seconds > 0)) {
    usage();
  }
  const consumer = new Consumer({
    httpclient,
    logger,
    nameSrv: namesrv,
    consumerGroup: group,
  });
  consumer.on('error', err => console.error('[consumer error]', err && err.stack || err));

  let count = 0;
  consumer.subscribe(topic, '*', async msg => {
    count += 1;
    console.log(JSON.stringify({
      body: msg.body ? msg.body.toString('utf8') : null,
      keys: msg.keys,
      tags: msg.tags,
      queueId: msg.queueId,
      queueOffset: msg.queueOffset,
      msgId: msg.msgId,
    }));
  });
  await consumer.ready();

  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline && count < expected) {
    await sleep(50);
  }
  await sleep(QUIET_AFTER_EXPECTED_MS);

  const closing = (async () => {
    await consumer.close();
    // The client's shared internal producer keeps its own connections and timers.
    if (Producer.defaultProducer) {
      await Producer.defaultProducer.close();
    }
    return 'closed';
  })();
  const outcome = await Promise.race([ closing, sleep(CLOSE_MAX_MS).then(() => 'timeout') ]);
  if (outcome !== 'closed') {
    console.error(`[consume.js] close did not finish within ${CLOSE_MAX_MS} ms`);
  }
  console.log(JSON.stringify({ done: true, count }));
  return outcome === 'closed' ? 0 : 1;
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
