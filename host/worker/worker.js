// A warm worker for the microservice's `worker` engine mode.
//
// It loads @openfn/core once, keeps adaptors and compiled expressions in
// memory, and runs one job at a time, each in a fresh vm2 sandbox (a new VM
// per run, as `core execute` does), so nothing a job sets survives it.
// Protocol: one JSON object per line. In on stdin:
//   {"id", "adaptor": <path>, "expression": <code>, "key": <cache key>, "state": {...}}
// Out on stdout, each tagged with the run's id:
//   {"id", "log": <line>}                         a line the job printed
//   {"id", "ok": true, "state": {...}}            finished
//   {"id", "ok": false, "kind": "job"|"compile"|"setup", "error": <text>}
// Anything the worker itself prints goes to stderr, never stdout.
'use strict';

const readline = require('readline');
const util = require('util');

const corePath = process.argv[2];
const {
  Compile,
  Execute,
  transforms: { defaultTransforms, verify },
  sandbox: { buildSandbox, VMGlobals },
} = require(corePath);

const adaptors = new Map();
const compiled = new Map();
const MAX_COMPILED = 500;

function send(message) {
  process.stdout.write(JSON.stringify(message) + '\n');
}

function adaptorFor(path) {
  let adaptor = adaptors.get(path);
  if (!adaptor) {
    const module = require(path);
    adaptor = module.Adaptor || module;
    adaptors.set(path, adaptor);
  }
  return adaptor;
}

function consoleFor(id) {
  const emit = (...args) =>
    util
      .format(...args)
      .split('\n')
      .forEach(line => send({ id, log: line }));
  return { log: emit, info: emit, warn: emit, error: emit, debug: emit, trace: emit };
}

async function run(request) {
  const { id } = request;
  let adaptor;
  try {
    adaptor = adaptorFor(request.adaptor);
  } catch (e) {
    return send({ id, ok: false, kind: 'setup', error: String((e && e.stack) || e) });
  }
  const sandbox = buildSandbox({ noConsole: false, testMode: false, extensions: [adaptor] });
  sandbox.console = consoleFor(id);
  const key = request.adaptor + '\0' + request.key;
  let expression = compiled.get(key);
  if (expression === undefined) {
    try {
      const compile = new Compile(request.expression, [
        ...defaultTransforms,
        verify({ sandbox: { ...sandbox, ...VMGlobals } }),
      ]);
      if (compile.errors.length > 0) {
        const text = compile.errors.map(err => String(err.message || err)).join('\n');
        return send({ id, ok: false, kind: 'compile', error: 'Compilation failed.\n' + text });
      }
      expression = compile.toString();
    } catch (e) {
      return send({ id, ok: false, kind: 'compile', error: String((e && e.stack) || e) });
    }
    if (compiled.size >= MAX_COMPILED) compiled.clear();
    compiled.set(key, expression);
  }
  try {
    const state = await Execute({ expression, state: request.state, sandbox });
    if (!['object', 'string', 'number'].includes(typeof state)) {
      throw new Error(`Could not write state to file, type must be serializable. Got '${typeof state}'`);
    }
    send({ id, ok: true, state });
  } catch (e) {
    send({ id, ok: false, kind: 'job', error: String((e && e.stack) || e) });
  }
}

// One run at a time: the host sends the next request only after an answer.
const lines = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
lines.on('line', line => {
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    process.stderr.write(`worker: ignoring a line that is not JSON: ${e}\n`);
    return;
  }
  chain = chain.then(() => run(request));
});
lines.on('close', () => chain.then(() => process.exit(0)));
process.on('unhandledRejection', e => process.stderr.write(`worker: unhandled rejection: ${e}\n`));
send({ ready: true });
