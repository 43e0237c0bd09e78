// A warm worker for the microservice's `worker` engine mode.
//
// It loads @openfn/core once, keeps adaptors and compiled expressions in
// memory, and runs one job at a time, each in a fresh vm2 sandbox (a new VM
// per run, as `core execute` does). It must give the final state, exit
// code and failure that `core execute` would give, and no run may leave
// anything behind for a later one:
// - the job's timers (the sandbox's `setTimeout`, core's only timer) are
//   cancelled when its run settles; an error thrown in one while the run is
//   going fails that run, as it crashes `core execute`;
// - an unhandled rejection or uncaught exception fails the run it came from
//   (found by its async context) while that run is going, as it crashes
//   `core execute`; one from a run that has ended is reported as a `late`
//   event naming that run and fails no other run; after an uncaught
//   exception, or a late event, the worker takes no more runs (it exits, or
//   the answer of the run in progress says `retire`);
// - anything else the run left holding the process open (a socket, a
//   request in flight, a timer of the adaptor's) and that does not close
//   within a moment of the answer ends with the worker, which exits;
// - what the worker shares between runs (the adaptor's exports and what
//   hangs off them) is read-only inside the VM, so a job cannot change it
//   for the next one;
// - a job whose promise can no longer settle (it waits on nothing) fails at
//   once, as `core execute` exits without writing a state.
// The final state is written with the copy of fast-safe-stringify that core's
// CLI writes its output file with (lib/utils.js `writeJSON`).
//
// Protocol: one JSON object per line. In on stdin:
//   {"id", "adaptor": <path>, "expression": <code>, "key": <cache key>, "state": {...}}
// Out on stdout:
//   {"ready": true}                                   once, at start
//   {"id", "started": true} | {"id", "refused": <why>}   first answer to a request
//   {"id", "log": <line>}                             a line the job printed
//   {"id", "ok": true [, "retire": <why>]}            finished; the next line is the state
//   {"id", "ok": false, "kind": "job"|"compile"|"setup"|"stalled", "error": <text> [, "retire"]}
//   {"late": {"run", "what", "name"}}                 trouble from a run that has ended
//   {"retiring": <why>}                               it exits now (between runs)
// Anything the worker itself prints goes to stderr, never stdout; error text
// from a late event goes only there (it may hold a credential, and only the
// host can mask those).
'use strict';

const { AsyncLocalStorage } = require('async_hooks');
const path = require('path');
const readline = require('readline');
const util = require('util');

const corePath = process.argv[2];
const {
  Compile,
  transforms: { defaultTransforms, verify },
  sandbox: { buildSandbox, VMGlobals },
} = require(corePath);
// Resolved from core's own folder, so these are the copies core itself uses.
const fromCore = name => require(require.resolve(name, { paths: [path.join(corePath, 'lib')] }));
const safeStringify = fromCore('fast-safe-stringify');
const { VM } = fromCore('vm2');

const adaptors = new Map();
const compiled = new Map();
const MAX_COMPILED = 500;
/** How often a pending run checks whether anything can still settle it. */
const STALL_CHECK_MS = 100;
/** How long what a run left open may take to close before the worker retires. */
const LEFTOVER_GRACE_MS = 250;

/** The run in progress, if any. */
let current = null;
/** The id of the run whose code is executing, by whatever async path it
 *  got there: it names the run an error comes from. */
const origin = new AsyncLocalStorage();
/** Why this worker takes no more runs, once it must not. */
let spent = null;

function send(message) {
  process.stdout.write(JSON.stringify(message) + '\n');
}

function describe(error) {
  return String((error && error.stack) || error);
}

// The handles, requests and timers holding the process open (unref'd ones
// are left out, as they do not keep `core execute` running either).
function activeResources() {
  const counts = new Map();
  for (const name of process.getActiveResourcesInfo()) {
    counts.set(name, (counts.get(name) || 0) + 1);
  }
  return counts;
}

// What is open now that was not open in `before`, e.g. ["TCPSocketWrap"].
function leftovers(before) {
  const left = [];
  for (const [name, n] of activeResources()) {
    for (let i = before.get(name) || 0; i < n; i++) left.push(name);
  }
  return left;
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

function consoleFor(run) {
  const emit = (...args) =>
    util
      .format(...args)
      .split('\n')
      .forEach(line => send({ id: run.id, log: line }));
  return { log: emit, info: emit, warn: emit, error: emit, debug: emit, trace: emit };
}

// The sandbox's `setTimeout`: Node's, with each timer owned by its run.
function timersFor(run) {
  return function setTimeout(callback, delay, ...args) {
    if (typeof callback !== 'function') {
      return global.setTimeout(callback, delay, ...args); // Node's own error
    }
    const timer = global.setTimeout(() => {
      run.timers.delete(timer);
      try {
        callback(...args);
      } catch (e) {
        run.fail('job', e);
      }
    }, delay);
    run.timers.add(timer);
    return timer;
  };
}

function newRun(id) {
  let end;
  const run = {
    id,
    timers: new Set(),
    failure: null,
    failed: new Promise(resolve => (end = resolve)),
    fail(kind, error) {
      if (!run.failure) {
        run.failure = { kind, error: describe(error) };
        end();
      }
    },
  };
  return run;
}

// core's Execute (lib/execute.js) is
// `new VM({ sandbox: Object.assign({ state }, sandbox) }).run(expression)`;
// this is the same, with the adaptor's values read-only inside the VM.
function execute(expression, state, sandbox, adaptor) {
  if (!expression) throw new Error('Cannot execute without an expression.');
  if (!state) throw new Error('Cannot execute without an initial state.');
  const vm = new VM();
  for (const name of Object.keys(adaptor)) {
    const value = sandbox[name];
    if ((typeof value === 'object' && value !== null) || typeof value === 'function') {
      vm.readonly(value);
    }
  }
  vm.setGlobals(Object.assign({ state }, sandbox));
  return vm.run(expression);
}

// Runs the job; resolves to what the host is told (the state still an object).
async function perform(run, request, before) {
  let adaptor;
  try {
    adaptor = adaptorFor(request.adaptor);
  } catch (e) {
    return { ok: false, kind: 'setup', error: describe(e) };
  }
  const sandbox = buildSandbox({ noConsole: false, testMode: false, extensions: [adaptor] });
  sandbox.console = consoleFor(run);
  if (sandbox.setTimeout === global.setTimeout) sandbox.setTimeout = timersFor(run);
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
        return { ok: false, kind: 'compile', error: 'Compilation failed.\n' + text };
      }
      expression = compile.toString();
    } catch (e) {
      return { ok: false, kind: 'compile', error: describe(e) };
    }
    if (compiled.size >= MAX_COMPILED) compiled.clear();
    compiled.set(key, expression);
  }

  // `core execute` exits when nothing is left that could settle the job's
  // promise; here the run fails then.
  const stalled = new Promise(resolve => {
    run.watch = global.setInterval(() => {
      if (run.timers.size === 0 && leftovers(before).length === 0) resolve({ stalled: true });
    }, STALL_CHECK_MS);
    run.watch.unref();
  });
  const job = Promise.resolve()
    .then(() => execute(expression, request.state, sandbox, adaptor))
    .then(
      state => ({ state }),
      error => ({ error })
    );
  const first = await Promise.race([job, run.failed, stalled]);
  clearInterval(run.watch);
  if (first && first.stalled) {
    return { ok: false, kind: 'stalled', error: 'the job waits on nothing' };
  }
  if (first && 'error' in first) run.fail('job', first.error);
  // One turn of the event loop, so that a rejection the job left unhandled
  // is reported now (it crashes `core execute`, final state written or not).
  if (!run.failure) await new Promise(resolve => setImmediate(resolve));
  if (run.failure) return { ok: false, ...run.failure };

  const state = first.state;
  // As core's CLI checks before writing its output file.
  if (!['object', 'string', 'number'].includes(typeof state)) {
    const e = new Error(`Could not write state to file, type must be serializable. Got '${typeof state}'`);
    return { ok: false, kind: 'job', error: describe(e) };
  }
  let text;
  try {
    // What core writes is `safeStringify(state, null, 2)`; without the
    // indentation it is one line and the same JSON value.
    text = safeStringify(state);
  } catch (e) {
    // fast-safe-stringify keeps what it must restore in module state; a
    // throw midway leaves it behind, so this worker is not used again.
    spent = `the final state of run ${run.id} could not be serialized`;
    return { ok: false, kind: 'job', error: describe(e) };
  }
  if (typeof text !== 'string') {
    // fs.writeFile refuses `undefined` (a `toJSON` returning nothing).
    const e = new TypeError(
      'The "data" argument must be of type string or an instance of Buffer, TypedArray, or DataView. Received undefined'
    );
    return { ok: false, kind: 'job', error: describe(e) };
  }
  return { ok: true, text };
}

async function take(request) {
  const { id } = request;
  if (spent) return send({ id, refused: spent });
  send({ id, started: true });
  const run = newRun(id);
  current = run;
  const before = activeResources();
  let answer;
  try {
    answer = await origin.run(id, () => perform(run, request, before));
  } catch (e) {
    answer = { ok: false, kind: 'job', error: describe(e) };
  }
  // The run has settled: its timers go before anything else can happen.
  clearInterval(run.watch);
  for (const timer of run.timers) clearTimeout(timer);
  run.timers.clear();
  current = null;
  const retire = spent ? { retire: spent } : {};
  if (answer.ok) {
    const header = JSON.stringify({ id, ok: true, ...retire });
    process.stdout.write(header + '\n' + answer.text + '\n');
  } else {
    send({ id, ...answer, ...retire });
  }
  if (spent) return; // the host replaces this worker
  // Whatever else the run left open ends with this worker, unless it is
  // closing anyway (a socket the server has just closed).
  let left = leftovers(before);
  for (const until = Date.now() + LEFTOVER_GRACE_MS; left.length > 0 && Date.now() < until; ) {
    await new Promise(resolve => global.setTimeout(resolve, 10).unref());
    left = leftovers(before);
  }
  if (left.length > 0) retireNow(`run ${id} left ${left.join(', ')} open`);
}

// Tells the host why, and exits: what the process held goes with it.
function retireNow(why) {
  send({ retiring: why });
  process.exit(0);
}

// Trouble from a run that has ended (`from` is its id): the host logs it
// with the run's id, and the worker goes once no run is using it.
function late(what, error, from) {
  const run = from === undefined ? 'no run' : `run ${from}`;
  const name = (error && error.name) || typeof error;
  process.stderr.write(`worker: ${what} from ${run}, which had ended: ${describe(error)}\n`);
  send({ late: { run: from === undefined ? null : from, what, name: String(name) } });
  spent = spent || `${what} from ${run}, which had ended`;
  if (!current) retireNow(spent);
}

// An error nobody caught fails the run it came from if that run is still
// going (as it crashes `core execute`), and never any other run.
function trouble(what, error) {
  const from = origin.getStore();
  if (current && from === current.id) current.fail('job', error);
  else late(what, error, from);
}

process.on('uncaughtException', error => {
  // Node does not promise a sound process after one of these.
  const from = origin.getStore();
  spent = spent || `an uncaught exception from ${from === undefined ? 'no run' : `run ${from}`}`;
  trouble('an uncaught exception', error);
});
process.on('unhandledRejection', reason => trouble('an unhandled rejection', reason));

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
  chain = chain.then(() => take(request));
});
// The host never closes stdin while it lives (it kills workers instead):
// end of input means it died, and a run's result has nobody to go to.
lines.on('close', () => process.exit(0));
// Both streams exist from the start, so that they never count as something a
// run left open.
process.stderr.write('');
send({ ready: true });
