//! The per-request parse: peeking at routing fields and splicing the model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use liter_llm_protocol::{peek_request, rewrite_model, Requirements};
use std::hint::black_box;

fn chat_body() -> Bytes {
    let history: Vec<_> = (0..8)
        .map(|i| {
            serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("message {i}: the quick brown fox jumps over the lazy dog, again and again.")})
        })
        .collect();
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "model": "gpt-4o",
            "messages": history,
            "temperature": 0.2,
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
        }))
        .unwrap(),
    )
}

fn bench(c: &mut Criterion) {
    let body = chat_body();
    let mut g = c.benchmark_group("peek");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("peek_chat_request", |b| {
        b.iter(|| {
            peek_request(black_box(&body), Requirements::CHAT)
                .unwrap()
                .stream
        })
    });
    let peek = peek_request(&body, Requirements::CHAT).unwrap();
    g.bench_function("rewrite_model", |b| {
        b.iter(|| {
            rewrite_model(
                black_box(&body),
                peek.model_span,
                &peek.model,
                "gpt-4o-2024-08-06",
            )
            .len()
        })
    });
    g.bench_function("rewrite_model_unchanged", |b| {
        b.iter(|| rewrite_model(black_box(&body), peek.model_span, &peek.model, "gpt-4o").len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
