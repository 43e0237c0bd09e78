"""{{name}}: a trigger plugin. The host calls `poll` on the table's
`interval` (or `cron`), on a fresh instance; each message returned goes
through the jobs' criteria like an `/inbox` receipt. This one returns one
message a poll: {"plugin": "{{name}}", "sequence": n, "now_ms": ms}, merged
with the JSON object in config `message` if set."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.trigger_source import PollResult, Tick
from wit_world.imports import host
from wit_world.imports.types import Level, Message, PluginError_Reject


class TriggerSource(exports.TriggerSource):
    def poll(self, tick: Tick) -> PollResult:
        raw = host.get_config("message") or "{}"
        try:
            extra = json.loads(raw)
        except ValueError as e:
            raise Err(PluginError_Reject(f"config `message` is not JSON: {e}"))
        if not isinstance(extra, dict):
            raise Err(PluginError_Reject(f"config `message` must be a JSON object, got {raw}"))
        body = {"plugin": "{{name}}", "sequence": tick.sequence, "now_ms": tick.now_ms, **extra}
        host.log(Level.DEBUG, f"poll {tick.sequence}")
        # The host sets `source` to `plugin:{{name}}` whatever is written here.
        return PollResult(messages=[
            Message(body=json.dumps(body), source="", metadata=[("sequence", str(tick.sequence))])
        ])
