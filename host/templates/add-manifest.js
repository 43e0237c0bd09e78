// Appends manifest.json to the component as its custom section
// `openfn:microservice/manifest`: what the plugin needs, which the service
// checks against the plugin's table when it loads.
const fs = require('fs');

const leb128 = (n) => {
  const out = [];
  do {
    const byte = n & 0x7f;
    n = Math.floor(n / 128);
    out.push(n ? byte | 0x80 : byte);
  } while (n);
  return Buffer.from(out);
};

const [wasm, manifest] = process.argv.slice(2);
const name = Buffer.from('openfn:microservice/manifest');
const body = Buffer.concat([leb128(name.length), name, fs.readFileSync(manifest)]);
fs.appendFileSync(wasm, Buffer.concat([Buffer.from([0]), leb128(body.length), body]));
