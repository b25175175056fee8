//! Key lookup with 1,000 virtual keys: hash the token, constant-time master
//! compare, map lookup by digest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use liter_llm_config::Config;
use liter_llm_gateway::Router;
use liter_llm_providers::registry::Registry;
use liter_llm_proxy::KeyStore;
use std::fmt::Write;
use std::hint::black_box;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let mut text = String::from(
        "[general]\nmaster_key = \"sk-master\"\n[[models]]\nname = \"gpt-4o\"\nprovider_model = \"openai/gpt-4o\"\napi_key = \"k\"\n",
    );
    for i in 0..1000 {
        let _ = write!(
            text,
            "[[keys]]\nkey = \"sk-virtual-{i:04}\"\nmodels = [\"gpt-4o\"]\n"
        );
    }
    let config = Config::from_toml_str(&text, "bench.toml", &|_| None).unwrap();
    let router =
        Router::from_config(&config, Registry::builtin().unwrap(), Arc::new(|_| None)).unwrap();
    let keys = KeyStore::from_config(&config, &router).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", "Bearer sk-virtual-0777".parse().unwrap());
    c.bench_function("auth/virtual_key_of_1000", |b| {
        b.iter(|| {
            keys.authenticate(black_box(&headers))
                .unwrap()
                .may_use("gpt-4o")
        })
    });
    let mut master = HeaderMap::new();
    master.insert("authorization", "Bearer sk-master".parse().unwrap());
    c.bench_function("auth/master_key", |b| {
        b.iter(|| keys.authenticate(black_box(&master)).is_ok())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
