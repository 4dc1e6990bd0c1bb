#!/usr/bin/env python3
"""Record the peer engine's embeddings for tests/server/test_embeddings.sh.

Run by hand, never by the tests (the peer is for side-by-side measurement only):

    python3 tests/server/data/embeddings_ref.py PEER_LLAMA_SERVER FIXTURES_DIR \
        > tests/server/data/embeddings_ref.json

For each case it starts `llama-server -m MODEL --embeddings --pooling P -t 1` on a free
port, asks for the inputs (POST /v1/embeddings, encoding_format base64; pooling none:
POST /embedding, every token's vector), and stores each vector as base64 float32
(little-endian), with the exact command. halo's vectors are compared with these by
cosine similarity and largest absolute difference (the bounds in the test were set from
the measured differences, printed by the test).
"""
import base64, json, os, socket, struct, subprocess, sys, time, urllib.request

TEXTS = [
    "The page cache keeps file data in memory.",
    "Spinlocks protect short critical sections; a holder must not sleep. "
    "Mutexes may sleep, so they serve longer sections, and the scheduler runs "
    "another task while a waiter blocks. Read-copy-update lets readers run "
    "without locks at all while writers publish new versions of the data.",
]
IDS = [[11, 268, 82, 317, 296, 279, 82, 74, 5, 900]]
CASES = [  # model (under FIXTURES/models), pooling, inputs (texts and token-id lists)
    ("tiny-qwen3-f16.gguf", "mean", TEXTS + IDS),
    ("tiny-llama-f16.gguf", "last", TEXTS),
    ("tiny-qwen3moe-f16.gguf", "cls", TEXTS[:1] + IDS),
    ("tiny-qwen35-f16.gguf", "mean", TEXTS),
    ("kdoc-moe-bf16.gguf", "last", TEXTS),
    ("tiny-qwen3-f16.gguf", "none", ["spin."]),
]


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def b64(v):
    return base64.b64encode(struct.pack("<%df" % len(v), *v)).decode()


def main():
    peer, fix = sys.argv[1], sys.argv[2]
    version = subprocess.run([peer, "--version"], capture_output=True, text=True)
    out = {"about": "the peer's embeddings (base64 float32 LE per vector); made by "
                    "tests/server/data/embeddings_ref.py",
           "peer_version": (version.stdout + version.stderr).strip().splitlines()[0],
           "cases": []}
    for model, pooling, inputs in CASES:
        port = free_port()
        cmd = [peer, "-m", os.path.join(fix, "models", model), "--embeddings", "--pooling",
               pooling, "-t", "1", "--port", str(port)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except Exception:
                    time.sleep(0.1)
            vecs = []
            for x in inputs:
                if pooling == "none":
                    r = post(port, "/embedding", {"content": x})
                    vecs.append([b64(row) for row in r[0]["embedding"]])
                else:
                    r = post(port, "/v1/embeddings", {"input": x, "encoding_format": "base64"})
                    vecs.append(r["data"][0]["embedding"])
        finally:
            proc.terminate()
            proc.wait()
        shown = " ".join(c if c != os.path.join(fix, "models", model) else "FIXTURES/models/" + model
                         for c in cmd[:-2])
        out["cases"].append({"model": model, "pooling": pooling, "command": shown,
                             "inputs": inputs, "embeddings": vecs})
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


main()
