// {{name}}: a logging plugin. The host calls `writeBatch` with the service's
// log records about once a second, on an instance it keeps; this appends
// `<ms> <level> <target>: <message>` per record to `<dir>/{{name}}.log`.
// Config: `dir`, the granted folder's guest path (default `/{{folder}}`).
// It never calls `log` (nor `console.log`): its own lines would come back.

import { getConfig } from 'openfn:microservice/host@0.1.0';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

export const logSink = {
  writeBatch(records) {
    const dir = (getConfig('dir') ?? '/{{folder}}').replace(/\/$/, '');
    const granted = getDirectories().find(([, guest]) => guest.replace(/\/$/, '') === dir);
    if (!granted) {
      throw { tag: 'unavailable', val: `${dir} is not a granted folder` };
    }
    const text = records
      .map((r) => `${r.timestampMs} ${r.level.toUpperCase()} ${r.target}: ${r.message.replace(/\n/g, ' ')}\n`)
      .join('');
    let stream;
    try {
      const file = granted[0].openAt({}, '{{name}}.log', { create: true }, { write: true });
      stream = file.appendViaStream();
    } catch (e) {
      throw { tag: 'unavailable', val: `cannot open ${dir}/{{name}}.log: ${e.payload ?? e}` };
    }
    const bytes = new TextEncoder().encode(text);
    for (let i = 0; i < bytes.length; i += 4096) {
      stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
    }
  },
};
