#!/usr/bin/env python3
"""halo's embeddings against the peer's recorded ones (tests/server/test_embeddings.sh).

usage: embeddings_compare.py REF.json CASE URL MIN_COS MAX_ABS

Asks the halo server at URL for case CASE's inputs of REF (data/embeddings_ref.py
made it), one request each and the texts again in one request (batched: the same
vectors), and compares each vector with the peer's: cosine similarity >= MIN_COS and
largest absolute difference <= MAX_ABS. Prints the measured figures.
"""
import base64, json, math, struct, sys, urllib.request


def post(url, path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def unb64(s):
    b = base64.b64decode(s)
    return list(struct.unpack("<%df" % (len(b) // 4), b))


def main():
    ref, case_i, url = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
    min_cos, max_abs = float(sys.argv[4]), float(sys.argv[5])
    case = ref["cases"][case_i]
    none = case["pooling"] == "none"
    got = []
    for x in case["inputs"]:
        if none:
            r = post(url, "/embedding", {"content": x})
            got.append(r[0]["embedding"])
        else:
            r = post(url, "/v1/embeddings", {"input": x, "encoding_format": "base64"})
            got.append([unb64(r["data"][0]["embedding"])])
    want = [[unb64(v) for v in (vs if none else [vs])] for vs in case["embeddings"]]
    worst_cos, worst_abs, ok = 1.0, 0.0, True
    for g, w in zip(got, want):
        if len(g) != len(w):
            print(f"FAIL: {len(g)} vectors, the peer has {len(w)}")
            ok = False
            continue
        for a, b in zip(g, w):
            dot = sum(x * y for x, y in zip(a, b))
            cos = dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
            worst_cos = min(worst_cos, cos)
            worst_abs = max(worst_abs, max(abs(x - y) for x, y in zip(a, b)))
    scale = max(abs(x) for vs in want for v in vs for x in v)
    print(f"{case['model']} pooling {case['pooling']}: {len(got)} inputs, cosine >= {worst_cos:.8f}, "
          f"max |diff| {worst_abs:.2e} (largest |value| {scale:.3g})")
    if worst_cos < min_cos or worst_abs > max_abs:
        print(f"FAIL: outside the bounds (cosine >= {min_cos}, max |diff| <= {max_abs})")
        ok = False
    texts = [x for x in case["inputs"] if isinstance(x, str)]
    if not none and len(texts) > 1:  # the texts in one request: the same vectors
        r = post(url, "/v1/embeddings", {"input": texts})
        batch = [d["embedding"] for d in sorted(r["data"], key=lambda d: d["index"])]
        single = [g[0] for g, x in zip(got, case["inputs"]) if isinstance(x, str)]
        d = max(abs(x - y) for a, b in zip(batch, single) for x, y in zip(a, b))
        print(f"  {len(texts)} texts in one request: max |diff| from one by one {d:.2e}")
        if len(batch) != len(texts) or d > 1e-5:
            print("FAIL: a batched request differs from one request per input")
            ok = False
    sys.exit(0 if ok else 1)


main()
