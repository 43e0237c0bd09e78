// {{name}}: a trigger plugin. The host calls `poll` on the table's
// `interval` (or `cron`), on a fresh instance; each message returned goes
// through the jobs' criteria like an `/inbox` receipt. This one returns one
// message a poll: {"plugin":"{{name}}","sequence":n,"now_ms":ms}, merged
// with the JSON object in config `message` if set.

import { getConfig, log } from 'openfn:microservice/host@0.1.0';

export const triggerSource = {
  poll(tick) {
    const raw = getConfig('message') ?? '{}';
    let extra;
    try {
      extra = JSON.parse(raw);
    } catch (e) {
      throw { tag: 'reject', val: `config \`message\` is not JSON: ${e}` };
    }
    if (extra === null || typeof extra !== 'object' || Array.isArray(extra)) {
      throw { tag: 'reject', val: `config \`message\` must be a JSON object, got ${raw}` };
    }
    const body = JSON.stringify({
      plugin: '{{name}}',
      sequence: Number(tick.sequence),
      now_ms: Number(tick.nowMs),
      ...extra,
    });
    log('debug', `poll ${tick.sequence}`);
    // The host sets `source` to `plugin:{{name}}` whatever is written here.
    return { messages: [{ body, source: '', metadata: [['sequence', String(tick.sequence)]] }] };
  },
};
