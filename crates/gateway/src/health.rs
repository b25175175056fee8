//! Background health probes: one task for the whole process, probing every
//! configured deployment each `[health].interval_secs`. Results feed routing
//! (an unhealthy deployment is skipped) and show per deployment on `/health`.

use crate::balance::ProbeReport;
use crate::router::{Deployment, Router};
use liter_llm_providers::adapters::{ChatContext, UpstreamTarget};
use liter_llm_providers::client::ClientsByConnectTimeout;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone)]
pub struct HealthChecker {
    pub router: Arc<Router>,
    pub clients: ClientsByConnectTimeout,
    pub interval: Duration,
    /// Deployments of this group get a real one-token chat completion; all
    /// others the cheapest call their API has.
    pub probe_model: Option<String>,
}

const PROBE_BODY: &str =
    r#"{"model":"","messages":[{"role":"user","content":"ping"}],"max_tokens":1}"#;

impl HealthChecker {
    /// Start probing. The task runs until the runtime shuts down.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.probe_all().await;
            }
        })
    }

    pub async fn probe_all(&self) {
        let deployments: Vec<(Arc<Deployment>, bool)> = self
            .router
            .groups()
            .flat_map(|g| {
                let chat = self.probe_model.as_deref() == Some(g.name.as_str());
                g.deployments.iter().map(move |d| (d.clone(), chat))
            })
            .collect();
        let probes = deployments.iter().map(|(d, chat)| self.probe(d, *chat));
        futures_util::future::join_all(probes).await;
    }

    async fn probe(&self, d: &Deployment, chat: bool) {
        let started = Instant::now();
        let result =
            tokio::time::timeout(d.timeout.min(Duration::from_secs(30)), self.call(d, chat)).await;
        let error = match result {
            Ok(Ok(status)) if status.is_success() => None,
            Ok(Ok(status)) => Some(format!("probe answered {}", status.as_u16())),
            Ok(Err(e)) => Some(e),
            Err(_) => Some("probe timed out".to_string()),
        };
        if let Some(e) = &error {
            tracing::warn!(deployment = %d.id, error = %e, "health probe failed");
        }
        d.state.set_probe(ProbeReport {
            healthy: error.is_none(),
            checked_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |t| t.as_secs()),
            latency_ms: started.elapsed().as_millis() as u64,
            error,
        });
    }

    async fn call(&self, d: &Deployment, chat: bool) -> Result<reqwest::StatusCode, String> {
        let client = self.clients.get(d.connect_timeout);
        let mut req = match (d.adapter, chat) {
            // OpenAI-compatible APIs list models for free.
            (None, false) => client.get(d.url("/models")),
            (None, true) => {
                let body = PROBE_BODY.replace(
                    r#""model":"""#,
                    &format!(r#""model":{}"#, json_string(&d.upstream_model)),
                );
                client
                    .post(d.chat_url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
            }
            // Native APIs have no free call in common; one token is the cheapest.
            (Some(adapter), _) => {
                let ctx = ChatContext {
                    upstream_model: &d.upstream_model,
                    requested_model: &d.model_name,
                    stream: false,
                    include_usage: false,
                };
                let target = UpstreamTarget {
                    base_url: &d.base_url,
                    options: &d.options,
                };
                let prepared = adapter
                    .chat_request_for(PROBE_BODY.as_bytes(), &ctx, &target)
                    .map_err(|e| e.message)?;
                let mut r = client
                    .post(d.url(&prepared.path))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(prepared.body);
                for (k, v) in prepared.headers {
                    r = r.header(k, v);
                }
                r
            }
        };
        if let Some((name, value)) = &d.auth {
            req = req.header(name.clone(), value.clone());
        }
        if let Some(tokens) = &d.token_source {
            let bearer = tokens
                .authorization(self.clients.default_one(), d.timeout)
                .await
                .map_err(|e| e.message)?;
            req = req.header(reqwest::header::AUTHORIZATION, bearer);
        }
        let mut req = req
            .build()
            .map_err(|e| crate::upstream::error_chain(&e.without_url()))?;
        if let Some(basic) = &d.basic_auth {
            if let http::header::Entry::Vacant(e) =
                req.headers_mut().entry(reqwest::header::AUTHORIZATION)
            {
                e.insert(basic.clone());
            }
        }
        client
            .execute(req)
            .await
            .map(|r| r.status())
            .map_err(|e| crate::upstream::error_chain(&e.without_url()))
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}
