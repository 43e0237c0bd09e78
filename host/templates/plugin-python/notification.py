"""{{name}}: a notification plugin. After each run the host calls `notify`
(on an instance it keeps between calls); this appends one JSON line per run to
`<dir>/events.jsonl`. Config: `dir`, the granted folder's guest path
(default `/{{folder}}`)."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import Level, PluginError_Unavailable, RunEvent, RunStatus


class Notifier(exports.Notifier):
    def notify(self, event: RunEvent) -> None:
        folder = host.get_config("dir") or "/{{folder}}"
        path = folder.rstrip("/") + "/events.jsonl"
        line = json.dumps({
            "run_id": event.run_id,
            "job": event.job,
            "status": "success" if event.status == RunStatus.SUCCESS else "failure",
            "duration_ms": event.duration_ms,
        })
        try:
            with open(path, "a") as f:
                f.write(line + "\n")
        except OSError as e:
            raise Err(PluginError_Unavailable(f"cannot write {path}: {e}"))
        host.log(Level.DEBUG, f"run {event.run_id} written to {path}")
