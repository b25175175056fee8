//! The only per-chunk work on a stream: scanning for the `[DONE]` line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use liter_llm_gateway::stream::DoneScanner;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let chunk = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"tok "},"logprobs":null,"finish_reason":null}]}

"#;
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes((chunk.len() * 32) as u64));
    g.bench_function("scan_32_chunks_for_done", |b| {
        b.iter(|| {
            let mut s = DoneScanner::default();
            for _ in 0..32 {
                s.feed(black_box(chunk));
            }
            s.feed(b"data: [DONE]\n\n")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
