//! The built-in registry against its generated documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use liter_llm_providers::adapters;
use liter_llm_providers::registry::{Adapter, Registry};

fn docs() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/providers.md");
    std::fs::read_to_string(path).expect("docs/providers.md exists (run tools/gen_registry.py)")
}

#[test]
fn docs_table_lists_every_provider_with_its_adapter_and_status() {
    let docs = docs();
    let registry = Registry::builtin().unwrap();
    for p in registry.iter() {
        let row_start = format!("| `{}` |", p.name);
        let row = docs
            .lines()
            .find(|l| l.starts_with(&row_start))
            .unwrap_or_else(|| {
                panic!(
                    "docs/providers.md has no row for `{}`; regenerate it",
                    p.name
                )
            });
        assert!(
            row.contains(&format!("| `{}` |", p.adapter.as_str())),
            "adapter of `{}`",
            p.name
        );
        // The doc's status must agree with what this build can actually route.
        let status = match p.adapter {
            Adapter::Openai => "routable (OpenAI-compatible)".to_string(),
            Adapter::Unsupported => "unsupported: ".to_string(),
            native if adapters::native(native).is_some() => {
                format!("routable (native `{}` adapter)", native.as_str())
            }
            _ => "native adapter pending".to_string(),
        };
        assert!(row.contains(status.as_str()), "status of `{}`", p.name);
    }
    let rows = docs.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(rows, registry.len(), "docs table has stale rows");
}

#[test]
fn builtin_registry_is_shared_and_complete() {
    let r = Registry::builtin().unwrap();
    assert_eq!(r.len(), 144);
    assert_eq!(r.iter().count(), 144);
    assert!(r.get("groq").unwrap().offers("chat"));
}

/// For providers behind a native adapter, every model endpoint the registry
/// lists is one the adapter translates: the docs and `liter-llm providers` must
/// not advertise a route that answers `endpoint_not_supported`. (An adapter may
/// do more than one provider name advertises: `azure_text` is Azure OpenAI for
/// completions.)
#[test]
fn native_providers_list_only_model_endpoints_their_adapter_offers() {
    use liter_llm_protocol::Endpoint;
    let registry = Registry::builtin().unwrap();
    let mut wrong = Vec::new();
    for p in registry.iter() {
        let Some(adapter) = adapters::native(p.adapter) else {
            continue;
        };
        for e in Endpoint::ALL {
            let listed = p.offers(e.registry_name());
            let offered = adapter.offers(e);
            if listed && !offered {
                wrong.push(format!(
                    "{}: `{}` listed={listed} offered={offered}",
                    p.name,
                    e.registry_name()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
