// An independent BACnet/IP client (node-bacnet, pure JavaScript) for the interop tests.
// Usage: node bacnet_client.js DEVICE_ADDRESS LOCAL_PORT OPS_JSON
// Runs the operations in order and prints one JSON array with a result per operation.
'use strict';
const Bacnet = require('node-bacnet');

const [address, localPort, opsJson] = process.argv.slice(2);
const ops = JSON.parse(opsJson);
const client = new Bacnet({ port: Number(localPort), interface: '127.0.0.1', apduTimeout: 3000 });
const PRESENT_VALUE = 85;

function values(result) {
  return result.values.map((v) => ({ type: v.type, value: v.value }));
}

function run(op) {
  const object = { type: op.type, instance: op.instance };
  return new Promise((resolve) => {
    const done = (err, result) => resolve(err ? { error: String(err.message || err) } : result);
    if (op.op === 'read') {
      client.readProperty(address, object, op.property || PRESENT_VALUE, {},
        (err, r) => done(err, r && values(r)));
    } else if (op.op === 'rpm') {
      const request = op.objects.map(([type, instance]) => ({
        objectId: { type, instance }, properties: [{ id: PRESENT_VALUE }],
      }));
      client.readPropertyMultiple(address, request, {}, (err, r) => done(err, r && r.values.map(
        (o) => o.values[0].value.map((v) => ({ type: v.type, value: v.value })))));
    } else if (op.op === 'write') {
      // tag 0 (NULL) relinquishes the priority slot
      const value = op.tag === 0 ? [{ type: 0 }] : [{ type: op.tag, value: op.value }];
      client.writeProperty(address, object, PRESENT_VALUE, value, { priority: op.priority },
        (err) => done(err, { ok: true }));
    } else {
      resolve({ error: `unknown op ${op.op}` });
    }
  });
}

(async () => {
  const results = [];
  for (const op of ops) {
    results.push(await run(op));
  }
  console.log(JSON.stringify(results));
  client.close();
})();
