#![forbid(unsafe_code)]
//! Fake upstreams that follow each provider's published API reference: paths,
//! headers, body fields, streaming framing and error shapes. Each fake records
//! what it received and rejects what the real provider would reject, so a test
//! through the proxy proves the translation, not just the plumbing.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
mod common;
pub mod deepgram;
pub mod elevenlabs;
pub mod gemini;
pub mod jina;
pub mod mistral;
mod oauth;
pub mod ollama;
pub mod sagemaker;
pub mod search;
pub mod stability;
pub mod vectors;
pub mod vertex;
pub mod voyage;
pub mod watsonx;
