"""{{name}}: a logging plugin. The host calls `write_batch` with the
service's log records about once a second, on an instance it keeps; this
appends `<ms> <LEVEL> <target>: <message>` per record to
`<dir>/{{name}}.log`. Config: `dir`, the granted folder's guest path
(default `/{{folder}}`). It never calls `host.log` (nor `print`): its own
lines would come back to it."""

from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import LogRecord, PluginError_Unavailable


class LogSink(exports.LogSink):
    def write_batch(self, records: List[LogRecord]) -> None:
        folder = host.get_config("dir") or "/{{folder}}"
        path = folder.rstrip("/") + "/{{name}}.log"
        lines = "".join(
            f"{r.timestamp_ms} {r.level.name} {r.target}: {r.message.replace(chr(10), ' ')}\n"
            for r in records
        )
        try:
            with open(path, "a") as f:
                f.write(lines)
        except OSError as e:
            raise Err(PluginError_Unavailable(f"cannot write {path}: {e}"))
