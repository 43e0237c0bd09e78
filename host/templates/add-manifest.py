# Appends manifest.json to the component as its custom section
# `openfn:microservice/manifest`: what the plugin needs, which the service
# checks against the plugin's table when it loads.
import sys

def leb128(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)

wasm, manifest = sys.argv[1], sys.argv[2]
name = b"openfn:microservice/manifest"
with open(manifest, "rb") as f:
    body = leb128(len(name)) + name + f.read()
with open(wasm, "ab") as f:
    f.write(b"\x00" + leb128(len(body)) + body)
