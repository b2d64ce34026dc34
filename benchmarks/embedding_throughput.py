"""embedding_throughput: ingest embedding chunks/s for e5, USE and an OpenAI-compatible endpoint.

The same generated chunks (Japanese and English, ~800 characters, the size `CHUNK_SIZE=1000` cuts
prose into) go through `Embeddings.embed_passages`, the ingest path, with no vector cache. The
OpenAI-style rows run against the tests' local fake server with a fixed latency per request
(`LATENCY_S`, about what the real API takes for a batch; the server runs in a process of its own,
so its CPU is not counted), with the product's defaults (batch size, concurrency) and, for
comparison, one request at a time of 32 texts (what an ingest did before). Load average before and
after each row is in the table: the local models are CPU-bound (CPU s / 100 chunks is the figure a
busy machine changes least).

Then what an ingest costs a voice worker on the same machine: e5 query-embedding latency alone,
beside a real `voicerag ingest` (e5) at `--nice 0`, and beside one at the default `--nice 10`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.common import DATA_DIR, ROOT, Progress, Result, bench_settings, log, ms_since, now, print_table, stats
from retrievers.embeddings import E5Model, EmbeddingModel, Embeddings, OpenAIBatching, OpenAIModel, UseModel

NAME = "embedding_throughput"
LATENCY_S = 0.2  # the fake endpoint's answer time per request
INGEST_SETTLE_S = 12.0  # from starting `voicerag ingest` to its embedding (imports, parsing, model load)
CHUNK_CHARS = 800

JA_WORDS = (
    "返品 交換 保証 送料 注文 配送 店舗 営業時間 会員 ポイント 割引 在庫 修理 お問い合わせ 支払い 領収書 "
    "製品 期間 無料 手数料 予約 キャンセル 受付 窓口 電話 メール 確認 登録 変更 更新"
).split()
JA_ENDINGS = ("は", "を", "に", "で", "の", "と", "が")
EN_WORDS = (
    "return exchange warranty shipping order delivery store hours member points discount stock repair "
    "contact payment receipt product period free fee booking cancel desk phone email confirm register change"
).split()


def generated_chunks(count: int, seed: int = 12) -> list[str]:
    """`count` distinct chunks of ~`CHUNK_CHARS` characters, alternating Japanese and English."""
    rng = random.Random(seed)
    chunks = []
    for number in range(count):
        parts: list[str] = [f"[{number}] "]
        while sum(map(len, parts)) < CHUNK_CHARS:
            if number % 2:
                words = [rng.choice(EN_WORDS) for _ in range(rng.randint(6, 14))]
                parts.append(" ".join(words).capitalize() + ". ")
            else:
                words = [rng.choice(JA_WORDS) + rng.choice(JA_ENDINGS) for _ in range(rng.randint(4, 9))]
                parts.append("".join(words) + "確認します。")
        chunks.append("".join(parts)[:CHUNK_CHARS])
    return chunks


def measure(label: str, model: EmbeddingModel, chunks: list[str], **extra: Any) -> dict[str, Any]:
    model.passages(chunks[:2])  # start-up costs (thread pools, connections) are not throughput
    embeddings = Embeddings(model, None)  # no cache: every chunk is embedded
    load_before = round(os.getloadavg()[0], 2)
    cpu = os.times()
    started = now()
    embeddings.embed_passages(chunks, progress=running_total(Progress(label, len(chunks))))
    seconds = now() - started
    used = os.times()
    cpu_s = (used.user - cpu.user) + (used.system - cpu.system)
    return {
        "setup": label,
        "model": model.name,
        "chunks": len(chunks),
        "seconds": round(seconds, 2),
        "chunks_per_s": round(len(chunks) / seconds, 1),
        "cpu_s_per_100_chunks": round(cpu_s / len(chunks) * 100, 2),
        "load_1min_before": load_before,
        "load_1min_after": round(os.getloadavg()[0], 2),
        **extra,
    }


def running_total(bar: Progress) -> Callable[[int], None]:
    """`Embeddings` reports each slice's count; `Progress` wants the total so far."""
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        bar(done)

    return step


def serve_fake_openai(commands: Connection, latency_s: float) -> None:
    """In a process of its own (its CPU is not the client's): the tests' fake OpenAI-compatible server,
    answering "url", "reset" and "stats" on `commands` until "stop"."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes.openai_server import Behaviour, FakeOpenAIServer

    with FakeOpenAIServer(Behaviour(first_token_delay_s=latency_s)) as server:
        while (command := commands.recv()) != "stop":
            if command == "reset":
                server.reset(server.behaviour)
            answer = {
                "url": server.base_url,
                "requests": len(server.embedding_requests),
                "max_in_flight": server.max_embedding_in_flight,
            }
            commands.send(answer)


def openai_rows(quick: bool) -> list[dict[str, Any]]:
    setups = [
        ("openai, product defaults", OpenAIBatching(), 1024 if quick else 8192),
        ("openai, 32/request, 1 at a time", OpenAIBatching(batch_size=32, concurrency=1), 128 if quick else 512),
    ]
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve_fake_openai, args=(theirs, LATENCY_S))
    server.start()
    rows = []
    try:
        for label, batching, count in setups:
            ours.send("url")
            model = OpenAIModel("text-embedding-3-small", "sk-bench", ours.recv()["url"], batching=batching)
            model.passages(["warm up"])  # a connection: not throughput
            ours.send("reset")
            ours.recv()
            row = measure(label, model, generated_chunks(count))
            ours.send("stats")
            stats = ours.recv()
            extra = {"batch_size": batching.batch_size, "concurrency": batching.concurrency}
            rows.append(row | extra | {"requests": stats["requests"] - 1, "max_in_flight": stats["max_in_flight"]})
    finally:
        ours.send("stop")
        server.join(10)
    return rows


def query_latency_beside_ingest(quick: bool) -> list[dict[str, Any]]:
    """What a voice worker feels while `voicerag ingest` (e5, the real CLI) runs on the same machine:
    e5 query-embedding latency (the CPU step of a turn) alone, beside an ingest at normal priority
    (`--nice 0`) and beside one at the default (`--nice 10`)."""
    threads = bench_settings(DATA_DIR).embeddings_threads
    voice = E5Model(threads)
    questions = [f"返品の期限は何日ですか? {n}" if n % 2 else f"When do stores open on day {n}?" for n in range(60)]
    voice.queries(questions[:2])
    count = 20 if quick else 60
    corpus = DATA_DIR / NAME / "corpus.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text(
        "".join(
            json.dumps({"id": f"c{n}", "text": text}, ensure_ascii=False) + "\n"
            for n, text in enumerate(generated_chunks(400))
        ),
        encoding="utf-8",
    )
    rows = []
    for label, nice in (
        ("no ingest", None),
        ("beside an ingest at --nice 0", 0),
        ("beside an ingest at --nice 10", 10),
    ):
        ingest = None
        if nice is not None:
            data_dir = DATA_DIR / NAME / f"ingest-nice-{nice}"
            shutil.rmtree(data_dir, ignore_errors=True)
            env = {**os.environ, "VOICERAG_DATA_DIR": str(data_dir), "EMBEDDINGS": "e5", "CHROMA_URL": ""}
            ingest = subprocess.Popen(
                [str(Path(sys.executable).parent / "voicerag"), "ingest", str(corpus), "--nice", str(nice)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(INGEST_SETTLE_S)  # start-up, parsing, model load: then it embeds for minutes
        try:
            load_before = round(os.getloadavg()[0], 2)
            latencies = []
            for question in questions[:count]:
                started = now()
                voice.queries([question])
                latencies.append(ms_since(started))
            still_embedding = ingest is None or ingest.poll() is None
        finally:
            if ingest is not None:
                ingest.kill()
                ingest.wait()
        row: dict[str, Any] = {"setup": label, "nice": nice, "load_1min_before": load_before}
        rows.append(row | {"ingest_ran_throughout": still_embedding, **stats(latencies)})
    return rows


async def run(quick: bool) -> Result:
    threads = bench_settings(DATA_DIR).embeddings_threads
    local = 32 if quick else 128
    chunks = generated_chunks(local)
    rows = []
    for label, model_class in (("e5", E5Model), ("use", UseModel)):
        log(f"loading {label}")
        rows.append(measure(f"{label}, {threads} threads", model_class(threads), chunks, threads=threads))
    rows.extend(openai_rows(quick))
    log("query latency beside an ingest")
    politeness = query_latency_beside_ingest(quick)
    print_table(
        f"embedding_throughput: Embeddings.embed_passages, no cache, {CHUNK_CHARS}-character chunks (ja+en); "
        f"OpenAI rows: local fake server, {LATENCY_S * 1000:.0f} ms per request",
        ["setup", "chunks", "s", "chunks/s", "CPU s / 100 chunks", "requests", "in flight", "load before", "after"],
        [
            [
                r["setup"],
                r["chunks"],
                r["seconds"],
                r["chunks_per_s"],
                r["cpu_s_per_100_chunks"],
                r.get("requests", "-"),
                r.get("max_in_flight", "-"),
                r["load_1min_before"],
                r["load_1min_after"],
            ]
            for r in rows
        ],
    )
    print_table(
        f"e5 query embedding ({bench_settings(DATA_DIR).embeddings_threads} threads), what a turn computes, "
        "beside `voicerag ingest` (e5) on the same machine",
        ["setup", "queries", "p50 ms", "p95 ms", "mean ms", "load before", "ingest ran throughout"],
        [
            [
                r["setup"],
                r["n"],
                r["p50"],
                r["p95"],
                r["mean"],
                r["load_1min_before"],
                "yes" if r["ingest_ran_throughout"] else "no",
            ]
            for r in politeness
        ],
    )
    figures = {
        "latency_s": LATENCY_S,
        "chunk_chars": CHUNK_CHARS,
        "rows": rows,
        "query_latency_beside_ingest": politeness,
    }
    return Result(NAME, quick, figures)
