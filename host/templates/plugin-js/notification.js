// {{name}}: a notification plugin. After each run the host calls `notify`
// (on an instance it keeps between calls); this appends one JSON line per run to
// `<dir>/events.jsonl`. Config: `dir`, the granted folder's guest path
// (default `/{{folder}}`).

import { getConfig, log } from 'openfn:microservice/host@0.1.0';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

/** Appends `text` to the file at `path` inside a granted folder. */
function append(path, text) {
  const slash = path.lastIndexOf('/');
  const folder = path.slice(0, slash) || '/';
  const granted = getDirectories().find(
    ([, guest]) => guest.replace(/\/$/, '') === folder.replace(/\/$/, ''),
  );
  if (!granted) {
    throw { tag: 'unavailable', val: `${folder} is not a granted folder` };
  }
  let stream;
  try {
    const file = granted[0].openAt({}, path.slice(slash + 1), { create: true }, { write: true });
    stream = file.appendViaStream();
  } catch (e) {
    throw { tag: 'unavailable', val: `cannot open ${path}: ${e.payload ?? e}` };
  }
  const bytes = new TextEncoder().encode(text);
  for (let i = 0; i < bytes.length; i += 4096) {
    stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
  }
}

export const notifier = {
  notify(event) {
    const dir = (getConfig('dir') ?? '/{{folder}}').replace(/\/$/, '');
    const line = JSON.stringify({
      run_id: event.runId,
      job: event.job,
      status: event.status,
      duration_ms: Number(event.durationMs),
    });
    append(`${dir}/events.jsonl`, `${line}\n`);
    log('debug', `run ${event.runId} written to ${dir}/events.jsonl`);
  },
};
