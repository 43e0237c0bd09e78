// Runs jobs the way OpenFn's current runtime does, for the engine's
// comparison test (tests/e2e/engine/lightning_syntax.rs).
//
// In on stdin: [{"name", "source": <the job as OpenFn's compiler emits it:
// an ES module importing the adaptor and exporting its operations>,
// "state": {...}}]. Out on stdout: {"<name>": {"state": <final state>} |
// {"error": <message>}}. Needs `node --experimental-vm-modules`, as
// OpenFn's CLI runs the runtime.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import run from '@openfn/runtime';

const require = createRequire(import.meta.url);
const common = path.dirname(require.resolve('@openfn/language-common/package.json'));
const silent = { log() {}, info() {}, debug() {}, warn() {}, error() {}, success() {}, always() {}, print() {}, timer() {}, break() {}, confirm() {} };

const cases = JSON.parse(readFileSync(0, 'utf8'));
const out = {};
for (const { name, source, state } of cases) {
  try {
    const result = await run(source, state, {
      linker: { modules: { '@openfn/language-common': { path: common } } },
      logger: silent,
      jobLogger: silent,
    });
    const errors = result && result.errors;
    out[name] = errors ? { error: JSON.stringify(errors) } : { state: result };
  } catch (e) {
    out[name] = { error: String((e && e.message) || e) };
  }
}
process.stdout.write(JSON.stringify(out));
