//! The per-chunk work on a stream (scanning for the `[DONE]` line, the usage
//! tap) and the work on a whole answer (reading its usage).
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
    g.bench_function("tap_32_chunks_finish_and_usage", |b| {
        let finish = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","system_fingerprint":"fp","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

"#;
        let usage = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","system_fingerprint":"fp","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":32,"total_tokens":40}}

"#;
        let chunk = bytes::Bytes::from_static(chunk);
        b.iter(|| {
            let mut tap = liter_llm_gateway::tap::UsageTap::new(true);
            for _ in 0..32 {
                black_box(tap.process(chunk.clone()));
            }
            black_box(tap.process(bytes::Bytes::from_static(finish)));
            black_box(tap.process(bytes::Bytes::from_static(usage)));
            tap.usage
        })
    });
    g.finish();
    let answer = br#"{"id":"chatcmpl-2201","object":"chat.completion","created":1795833846,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from mock-upstream.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":5,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_mock"}"#;
    let mut g = c.benchmark_group("answer");
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("read_usage_model_finish", |b| {
        b.iter(|| liter_llm_gateway::tap::read_answer(black_box(answer)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
