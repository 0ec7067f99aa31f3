"""1:N search over 1M enrolled 128-bit templates, and the REST service under load.

Part 1 (matchers): identity-clustered codes: every enrolled template is its person's random centre with 10 % of
the bits flipped; each query is another capture of an enrolled person (another 10 % flipped), so the right
answer is far from the rest (about 23 bits vs 64). Per back-end: build time (train + add), memory, ms per query
one query at a time on one thread, ms per query for a batch on all cores, and recall@1 against the exact
search (the same top-1 distance; ties count as found; with several templates per person, finding the same person
counts as found).
Part 2 (service): `biohash serve` on 127.0.0.1 with --service-templates enrolled (bulk import), identify
requests with codes from several client threads: requests/s, p50/p99 latency, errors.

    python bench/matching.py [--n 1000000] [--queries 500] [--service-templates 100000]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import report, run_main

from biohash.match.codes import pack
from biohash.match.matching import make_matcher
from biohash.match.types import Codes


def clustered(n: int, queries: int, bits: int, flip: float, per_identity: int = 1,
              seed: int = 0) -> tuple[Codes, Codes, np.ndarray]:
    """n templates of n / per_identity people (each its random centre, `flip` of the bits flipped) and queries
    (other captures of enrolled people); returns gallery, probes and the person of every template."""
    rng = np.random.default_rng(seed)
    people = n // per_identity
    centres = rng.integers(0, 2, (people, bits), dtype=np.uint8)
    labels = np.repeat(np.arange(people), per_identity)
    gallery = pack(centres[labels] ^ (rng.random((len(labels), bits)) < flip).astype(np.uint8))
    who = rng.choice(people, queries, replace=False)
    probes = pack(centres[who] ^ (rng.random((queries, bits)) < flip).astype(np.uint8))
    return gallery, probes, labels


def memory_mb(matcher) -> float:
    if hasattr(matcher, "_sorted"):  # multi-index hashing: the scan's arrays plus one sorted copy a table
        return (matcher._exact._words.nbytes * (1 + len(matcher._sorted)) + matcher._exact._ids.nbytes
                + sum(o.nbytes + s.nbytes for o, s in zip(matcher._order, matcher._starts))) / 2**20
    if hasattr(matcher, "index"):
        import faiss

        return len(faiss.serialize_index_binary(matcher.index)) / 2**20
    return (matcher._words.nbytes + matcher._ids.nbytes) / 2**20


class RawFaiss:
    """faiss IndexBinaryFlat with nothing of biohash around it: the ceiling biohash's wrappers are held to."""

    def __init__(self, n_bits: int) -> None:
        import faiss

        self.index, self.threads = faiss.IndexBinaryFlat(n_bits), 1

    def add(self, ids, codes: Codes) -> None:
        self.index.add(np.ascontiguousarray(codes.bits))

    def search(self, codes: Codes, k: int):
        import faiss

        faiss.omp_set_num_threads(1 if len(codes) == 1 else self.threads)
        return self.index.search(np.ascontiguousarray(codes.bits), k)

    def range_search(self, codes: Codes, radius: int):
        lims, d, i = self.index.range_search(np.ascontiguousarray(codes.bits), radius + 1)  # faiss: d < radius
        return [(d[lims[q]:lims[q + 1]], i[lims[q]:lims[q + 1]]) for q in range(len(codes))]


def radius_ms(m, probes: Codes, radius: int, n: int = 100) -> float:
    """ms per single query of 'every template within radius' (exact: the scan counts, MIH looks up)."""
    n = min(n, len(probes))
    one = [Codes(probes.bits[i : i + 1], probes.n_bits) for i in range(n)]
    t0 = time.perf_counter()
    for q in one:
        if hasattr(m, "range_search"):
            m.range_search(q, radius)
        else:
            d, _ = m.search(q, 64)
            d[d <= radius]
    return (time.perf_counter() - t0) / n * 1000


def measure(factory: str, gallery: Codes, probes: Codes, cores: int, cache: dict) -> dict:
    """Figures of one back-end; an index already built for another search parameter is reused."""
    import faiss

    faiss.omp_set_num_threads(cores)  # building uses every core
    base, _, params = factory.partition(":")
    if factory == "raw-faiss":
        t0 = time.perf_counter()
        m = RawFaiss(gallery.n_bits)
        m.add(None, gallery)
        cache[base] = (m, time.perf_counter() - t0)
    if base in cache:
        m, build = cache[base]
        if params:
            m.set_search_params(**{k: int(v) for k, v in (p.split("=") for p in params.split(",") if p)})
    else:
        t0 = time.perf_counter()
        m = make_matcher(gallery.n_bits, factory, threads=1)
        m.add(np.arange(len(gallery)), gallery)
        build = time.perf_counter() - t0
        cache[base] = (m, build)
    m.search(Codes(probes.bits[:1], probes.n_bits), 1)  # warm caches (column copies, first-touch)
    faiss.omp_set_num_threads(1)
    one = min(len(probes), 200)
    t0 = time.perf_counter()
    dists = []
    for i in range(one):
        d, _ = m.search(Codes(probes.bits[i : i + 1], probes.n_bits), 5)
        dists.append(d[0, 0])
    single = (time.perf_counter() - t0) / one * 1000
    faiss.omp_set_num_threads(cores)
    if hasattr(m, "threads"):
        m.threads = cores
    t0 = time.perf_counter()
    d_all, i_all = m.search(probes, 5)
    batch = (time.perf_counter() - t0) / len(probes) * 1000
    if hasattr(m, "threads"):
        m.threads = 1
    return {"build_s": build, "memory_mb": memory_mb(m), "ms_single": single, "ms_batch": batch,
            "top1": d_all[:, 0], "top1_id": i_all[:, 0]}


def in_process_rps(bundle: Path, store: Path, codes: np.ndarray, requests: int) -> tuple[float, float, float]:
    """Deployment identify by code in this process, what the HTTP service is held to: probes/s one query at a
    time (identify), 32 at a time (identify_many, the batch route's call), and one at a time with asymmetric
    matching (relaxed probes: the code's signs with random magnitudes; Hamming candidates rescored per subject)."""
    from biohash.match.codes import relaxed_from_real
    from biohash.serve.deployment import Deployment

    dep = Deployment.from_bundle(bundle, store)
    probes = [dep.codes_from_hex({"print": codes[k].tobytes().hex()}) for k in range(min(requests, len(codes)))]
    dep.identify(probes[0], k=1)
    t0 = time.perf_counter()
    for p in probes:
        dep.identify(p, k=1)
    single = len(probes) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, len(probes), 32):
        dep.identify_many(probes[start : start + 32], k=1)
    batch = len(probes) / (time.perf_counter() - t0)
    dep.store.close()
    asym = Deployment.from_bundle(bundle, store, asymmetric=True)
    magnitudes = np.random.default_rng(5).uniform(0.05, 1.0, (len(probes), asym.bits)).astype(np.float32)
    signs = 2.0 * np.unpackbits(codes[: len(probes)], axis=1).astype(np.float32) - 1
    relaxed = [{"print": relaxed_from_real(signs[k : k + 1] * magnitudes[k : k + 1])} for k in range(len(probes))]
    asym.identify(relaxed[0], k=1)
    t0 = time.perf_counter()
    for p in relaxed:
        asym.identify(p, k=1)
    asymmetric = len(probes) / (time.perf_counter() - t0)
    asym.store.close()
    return single, batch, asymmetric


class RawHttp:
    """A keep-alive HTTP/1.1 client on a bare socket: requests are built before the clock starts and replies
    read with nothing but their length parsed, so the figure is the server's (httpx cost about as much as the
    server per request on these 2 cores)."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @staticmethod
    def request(path: str, body: dict, key: str) -> bytes:
        """The bytes of one POST with a JSON body."""
        import json

        data = json.dumps(body).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nX-API-Key: {key}"
                f"\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data

    def send(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.sock.recv(65536)
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += self.sock.recv(65536)
        return int(lines[0].split()[1]), body


def service_load(n_templates: int, requests: int, clients: int) -> dict:
    """Start `biohash serve` with a tiny exported model and n_templates bulk-imported codes; identify load."""
    from typer.testing import CliRunner

    from biohash.cli import app
    from biohash.serve.service import wait_until_healthy
    from biohash.serve.store import open_store

    work = Path(tempfile.mkdtemp(prefix="biohash-load-"))
    runner = CliRunner()
    r = runner.invoke(app, ["train", "cohash", "-b", "16", "--model", "tiny", "--bits", "128", "--epochs", "1", "--identities",
                            "24", "--captures", "4", "--image-size", "64", "--name", "m", "--runs", str(work)])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["export", str(work / "m")]).exit_code == 0
    import json

    fingerprint = json.loads((work / "m" / "export" / "bundle.json").read_text())["fingerprint"]
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (n_templates, 16), dtype=np.uint8)
    store = open_store(work / "t.db")
    t0 = time.perf_counter()
    store.enroll_batch([(f"u{k}", "print", codes[k].tobytes()) for k in range(n_templates)], 128, fingerprint)
    import_s = time.perf_counter() - t0
    store.close()
    import secrets

    key = secrets.token_hex(16)
    (work / "keys").write_text(f"{key} match,codes,scores\n")  # hex codes need `codes`, distances `scores`
    (work / "keys").chmod(0o600)
    in_process, in_process_batch, in_process_asym = in_process_rps(work / "m" / "export", work / "t.db", codes,
                                                                   requests)
    port = 18765
    server = subprocess.Popen([sys.executable, "-m", "biohash.cli", "serve", "--bundle", str(work / "m"), "--store",
                               str(work / "t.db"), "--port", str(port), "--api-key-file", str(work / "keys"),
                               "--rate-limit", "0", "--audit-log", str(work / "audit.log")],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        startup = wait_until_healthy(base, server, timeout=300)
        probe = [codes[k].tobytes().hex() for k in rng.choice(n_templates, requests)]
        import json
        import threading

        local = threading.local()  # one keep-alive connection per client thread
        singles = [RawHttp.request("/v1/identify", {"codes": {"print": p}, "k": 1}, key) for p in probe]
        batches = [RawHttp.request("/v1/identify/batch", {"probes": [{"codes": {"print": p}} for p in probe[32 * k : 32 * k + 32]],
                                                          "k": 1}, key) for k in range(requests // 32)]

        def client() -> RawHttp:
            if not hasattr(local, "client"):
                local.client = RawHttp(port)
            return local.client

        def one(k: int) -> tuple[float, int, bool]:
            t = time.perf_counter()
            status, body = client().send(singles[k])
            ok = status == 200 and json.loads(body)["candidates"][0]["distance"] == 0.0
            return time.perf_counter() - t, status, ok

        one(0)  # first request builds the matcher columns
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0

        def batch(k: int) -> bool:  # /v1/identify/batch, 32 probes a request
            return client().send(batches[k])[0] == 200

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            batches_ok = sum(pool.map(batch, range(requests // 32)))
        batch_rps = 32 * (requests // 32) / (time.perf_counter() - t0)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lat = np.array([r[0] for r in results]) * 1000
    return {"templates": n_templates, "import_s": import_s, "startup_s": startup, "requests": requests,
            "clients": clients, "rps": requests / wall, "in_process_rps": in_process,
            "in_process_asymmetric_rps": in_process_asym,
            "http_vs_in_process": requests / wall / in_process, "batch32_probes_per_s": batch_rps,
            "batch32_vs_in_process": batch_rps / in_process,
            "in_process_batch32_probes_per_s": in_process_batch, "batch32_vs_in_process_batch32": batch_rps / in_process_batch,
            "batch_errors": requests // 32 - batches_ok, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": int(sum(r[1] != 200 for r in results)),
            "wrong_top1": int(sum(not r[2] for r in results))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--bits", type=int, default=128)
    ap.add_argument("--per-identity", type=int, default=1, help="enrolled templates per person")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--backends", nargs="+", default=["raw-faiss", "auto", "exact", "BFlat", "mih", "BIVF4096:nprobe=8",
                                                       "BIVF4096:nprobe=32", "BHNSW32:efSearch=32"])
    ap.add_argument("--radius", type=float, default=17 / 64, help="verification radius as a share of the bits "
                    "(the demo's threshold: 17 of 64 bits)")
    ap.add_argument("--service-templates", type=int, default=100_000)
    ap.add_argument("--service-requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    gallery, probes, labels = clustered(args.n, args.queries, args.bits, 0.1, args.per_identity)
    rows, results, reference, cache = [], {}, None, {}
    for factory in args.backends:
        r = measure(factory, gallery, probes, args.cores, cache)
        if reference is None:
            reference = (r["top1"], r["top1_id"])
        # found: the exact top-1 distance, or (several templates per person) the exact top-1's person
        same = (r.pop("top1") == reference[0]) | (labels[r.pop("top1_id")] == labels[reference[1]])
        r["recall@1"] = float(same.mean())
        r["ms_radius"] = radius_ms(cache[factory.partition(":")[0]][0], probes, round(args.radius * args.bits))
        results[factory] = r
        raw = results.get("raw-faiss", r)
        rows.append([factory, round(r["ms_single"] / raw["ms_single"], 2), round(r["ms_single"], 3),
                     round(r["ms_batch"], 3), round(r["ms_radius"], 3), round(raw["ms_radius"] / r["ms_radius"], 1),
                     r["recall@1"], round(r["build_s"], 1), round(r["memory_mb"], 1)])
        print(rows[-1], flush=True)
    service = service_load(args.service_templates, args.service_requests, args.clients) if args.service_templates else None
    if service:
        print(service)
    name = "matching" if args.per_identity == 1 else f"matching_{args.per_identity}_per_identity"
    report(name, f"1:N search, {args.n:,} enrolled {args.bits}-bit templates ({args.per_identity} per person), "
           f"{args.queries} queries; {args.cores} cores",
           ["back-end", "x raw faiss (1 query)", "ms/query (1 thread)", f"ms/query (batch, {args.cores} cores)",
            f"ms radius {round(args.radius * args.bits)} (1 query)", "radius speed-up vs raw faiss", "recall@1 vs exact",
            "build s", "memory MB"], rows, {"results": results, "service": service,
                                            "args": {k: str(v) for k, v in vars(args).items()}})


if __name__ == "__main__":
    run_main(main)
