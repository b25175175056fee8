#!/usr/bin/env python3
"""Generate the provider registry data and its documentation.

Inputs:
  * ../shared/reference/providers.json, beside the checkout (or --reference PATH): the reference
    liter-llm project's `schemas/providers.json` (MIT), itself generated from
    LiteLLM data. It is known to contain mistakes.
  * OVERRIDES below: hand-checked corrections, each with the reason in `notes`.

Outputs (committed to the repository):
  * crates/providers/data/providers.toml  (read by crates/providers/src/registry.rs)
  * docs/providers.md

Usage:
  python3 tools/gen_registry.py            # regenerate both files
  python3 tools/gen_registry.py --check    # exit 1 if the committed files are stale
  python3 tools/gen_registry.py --changes  # list every field that differs from the reference

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The shared reference data sits beside the repository checkout.
DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "providers.json"
TOML_OUT = ROOT / "crates/providers/data/providers.toml"
DOC_OUT = ROOT / "docs/providers.md"

AUTH_STYLES = {"bearer", "x_api_key", "api_key", "x_goog_api_key", "sigv4", "oauth", "none",
               "x_subscription_token", "token", "xi_api_key"}
ADAPTERS = {
    "openai", "anthropic", "gemini", "vertex_ai", "bedrock", "azure_openai", "azure_ai", "cohere",
    "mistral", "watsonx", "databricks", "cloudflare", "sagemaker", "oci", "snowflake", "ollama",
    "tavily", "brave", "exa", "firecrawl", "serper", "linkup", "searxng", "elevenlabs", "deepgram",
    "stability", "voyage", "jina", "unsupported",
}
# Normalised endpoint names, in display order. Must match ENDPOINTS in registry.rs.
ENDPOINTS = [
    "chat", "completions", "embeddings", "images", "audio_speech", "audio_transcriptions",
    "moderations", "rerank", "search", "ocr", "files", "batches", "responses",
]
# Reference endpoint names -> normalised names. "audio" is ambiguous in the reference
# (speech and/or transcription); entries where only one applies override it.
ENDPOINT_MAP = {
    "chat": ["chat"],
    "completion": ["completions"],
    "embedding": ["embeddings"],
    "image": ["images"],
    "audio": ["audio_speech", "audio_transcriptions"],
    "moderation": ["moderations"],
    "rerank": ["rerank"],
    "search": ["search"],
    "ocr": ["ocr"],
    "files": ["files"],
    "batch": ["batches"],
}
# Reference model_prefixes that are LiteLLM pricing keys rather than model-id prefixes
# (image size/quality tiers, per-parameter-count pricing buckets). They are dropped
# everywhere; provider-named prefixes ("groq/...") are dropped too, because
# `Registry::resolve` matches provider names before it looks at model prefixes.
JUNK_PREFIXES = {
    "1024-", "1024-x-1024/", "1024-x-1536/", "1536-", "1536-x-1024/", "512-", "512-x-512/",
    "max-", "max-x-max/", "hd/", "hd/1024-", "high/", "high/1024-", "high/1536-", "low/",
    "low/1024-", "low/1536-", "medium/", "medium/1024-", "medium/1536-", "standard/",
    "standard/1024-", "standard/1536-", "fireworks-", "together-",
}

UNVERIFIED = "From the reference data; not independently checked."
SELF_HOSTED_KEY = "A key is optional: it is sent as a Bearer token only when `api_key` is configured."
SEARCH_ONLY = ("A web search API with no adapter in this build; `/v1/search` is served through "
               "Tavily, Brave, Exa, Firecrawl, Serper, Linkup, SearXNG and Perplexity.")
# A generic OpenAI-compatible server may serve any endpoint with an OpenAI-style shape,
# OCR (Mistral's shape) included; web search has no such common shape.
ALL_OPENAI_ENDPOINTS = list(ENDPOINTS)
ALL_OPENAI_ENDPOINTS.remove("search")

# Hand-checked corrections. Keys are provider names; values replace the fields derived
# from the reference. `None` removes a field. Every entry in the reference's
# `complex_providers` list must appear here with an explicit `adapter`.
OVERRIDES: dict[str, dict] = {
    # ---------------------------------------------------------------- major APIs
    "openai": {
        "endpoints": ["chat", "completions", "embeddings", "images", "audio_speech",
                      "audio_transcriptions", "moderations", "files", "batches", "responses"],
        "model_prefixes": ["gpt-", "chatgpt-", "ft:", "o1", "o3", "o4", "dall-e-", "tts-", "whisper-",
                           "text-embedding-", "text-moderation-", "omni-moderation-", "sora-",
                           "davinci-", "babbage-"],
        "notes": "Checked against OpenAI's API reference: base https://api.openai.com/v1, "
                 "`Authorization: Bearer`. Reference model prefixes that were image size/quality "
                 "pricing keys (`1024-`, `hd/`, ...) were dropped.",
    },
    "text-completion-openai": {
        "endpoints": ["completions"],
        "model_prefixes": [],
        "notes": "OpenAI's legacy Completions API (`/v1/completions`) on the same base URL and key as "
                 "`openai`. The reference's `gpt-` prefix duplicated `openai`'s and was dropped.",
    },
    "anthropic": {
        "adapter": "anthropic",
        "auth": "x_api_key",
        "endpoints": ["chat", "batches"],
        "notes": "Checked against Anthropic's API docs: `x-api-key` header plus a required "
                 "`anthropic-version` header (e.g. 2023-06-01); the Messages API (`/v1/messages`) is "
                 "not OpenAI-shaped, so it needs the native adapter. The reference wrongly listed "
                 "bearer auth.",
    },
    "anthropic_text": {
        "adapter": "anthropic",
        "auth": "x_api_key",
        "endpoints": ["chat"],
        "notes": "Anthropic's legacy Text Completions API (`/v1/complete`), `x-api-key` + "
                 "`anthropic-version` headers; only Claude 2-era models used it, and Anthropic has "
                 "retired them. The `anthropic` adapter serves this name through the Messages API "
                 "(chat completions); `/v1/completions` is refused with a 400. The reference "
                 "wrongly listed bearer auth.",
    },
    "gemini": {
        "adapter": "gemini",
        "auth": "x_goog_api_key",
        "base_url": "https://generativelanguage.googleapis.com/v1beta",
        "endpoints": ["chat", "embeddings"],
        "notes": "Checked against Google's Gemini API reference: the native API "
                 "(`{base_url}/models/{model}:generateContent`, and "
                 "`:streamGenerateContent?alt=sse` for streams) with the key in an `x-goog-api-key` "
                 "header; the `gemini` adapter translates OpenAI chat completions to and from it. "
                 "`/v1/embeddings` becomes `:embedContent` (a string `input`) or "
                 "`:batchEmbedContents` (an array, order kept), `dimensions` becomes "
                 "`outputDimensionality` and the extension field `task_type` becomes `taskType`; "
                 "`base64` is encoded by the proxy; usage comes from `usageMetadata.promptTokenCount` "
                 "and is left out when Google does not report it. "
                 "Google also documents an OpenAI-compatible endpoint "
                 "(https://generativelanguage.googleapis.com/v1beta/openai, `Authorization: Bearer "
                 "<GEMINI_API_KEY>`): to use it instead, configure an `openai/<model>` model with that "
                 "`base_url`. The reference listed the OpenAI-compatible URL with bearer auth.",
    },
    "vertex_ai": {
        "adapter": "vertex_ai",
        "auth": "oauth",
        "endpoints": ["chat", "embeddings"],
        "base_url": "https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}",
        "notes": "Checked against Google Cloud docs: calls need a short-lived OAuth2 access token "
                 "(scope cloud-platform); prediction endpoints reject API keys. The `vertex_ai` "
                 "adapter gets tokens for a service-account key (`vertex_credentials` or "
                 "GOOGLE_APPLICATION_CREDENTIALS) with the JWT-bearer grant, caches them and "
                 "refreshes them before they expire, and fills `{project}` / `{location}` from "
                 "`vertex_project` / `vertex_location` (or VERTEXAI_PROJECT / VERTEXAI_LOCATION). "
                 "`claude-*` models go to Anthropic's publisher (`.../publishers/anthropic/models/"
                 "{model}:rawPredict`, `:streamRawPredict`; the Messages body with "
                 "`anthropic_version: vertex-2023-10-16` and no `model`); every other model to "
                 "Google's (`.../publishers/google/models/{model}:generateContent`, "
                 "`:streamGenerateContent?alt=sse`). `/v1/embeddings` is `:predict` on Google's "
                 "text-embedding models (one instance per input, `dimensions` as "
                 "`outputDimensionality`, usage from `statistics.token_count`); images, audio and "
                 "OCR are not translated. Application default credentials from a "
                 "metadata server or `gcloud` user logins are not supported. Vertex also has an "
                 "OpenAI-compatible `.../endpoints/openapi/chat/completions`; it is not used.",
    },
    "vertex_ai/agent_engine": {
        "adapter": "unsupported",
        "notes": "Vertex AI Agent Engine runs deployed agents (sessions and queries), not an "
                 "OpenAI-style model endpoint.",
    },
    "azure": {
        "adapter": "azure_openai",
        "auth": "api_key",
        "base_url": "https://{resource}.openai.azure.com",
        "env_var": "AZURE_OPENAI_API_KEY",
        "requires_base_url": True,
        "endpoints": ["chat", "completions", "embeddings", "images", "audio_speech",
                      "audio_transcriptions", "files", "batches", "responses"],
        "notes": "Checked against Azure OpenAI docs: `api-key` header (or a Microsoft Entra ID "
                 "bearer token), deployment URLs `{resource}/openai/deployments/{deployment}/chat/"
                 "completions?api-version=...` (GA `2024-10-21` unless the model sets `api_version`); "
                 "the model id is the deployment name. `base_url` is the resource endpoint, with or "
                 "without `/openai`; a `base_url` ending in `/openai/v1` uses the v1 API "
                 "(`/chat/completions` with the deployment as `model`, no api-version). The `azure` "
                 "adapter forwards the OpenAI body and answers (content-filter results included). "
                 "The reference listed `moderation`, which Azure OpenAI does not offer as an endpoint.",
    },
    "azure_text": {
        "adapter": "azure_openai",
        "auth": "api_key",
        "base_url": "https://{resource}.openai.azure.com",
        "env_var": "AZURE_OPENAI_API_KEY",
        "requires_base_url": True,
        "endpoints": ["completions"],
        "notes": "Azure OpenAI legacy Completions on a deployment "
                 "(`{resource}/openai/deployments/{deployment}/completions?api-version=...`), `api-key` "
                 "header; same resource endpoint and key as `azure`.",
    },
    "azure_ai": {
        "adapter": "azure_ai",
        "auth": "api_key",
        "base_url": "https://{resource}.services.ai.azure.com/models",
        "env_var": "AZURE_AI_API_KEY",
        "requires_base_url": True,
        "endpoints": ["chat", "embeddings", "ocr"],
        "notes": "Checked against Azure AI Foundry docs: the model inference endpoint "
                 "`https://{resource}.services.ai.azure.com/models` (`{base_url}/chat/completions"
                 "?api-version=2024-05-01-preview` unless the model sets `api_version`) takes an "
                 "`api-key` header (or Entra ID bearer) and routes by the body's `model` (the "
                 "deployment name). The adapter sends `extra-parameters: pass-through` so fields "
                 "outside the inference schema reach the model. OCR goes to Foundry's Mistral OCR "
                 "deployment (`/providers/mistral/azure/ocr` at the resource root, or `/v1/ocr` on "
                 "a serverless endpoint) with Mistral's shapes; Azure's OCR takes base64 `data:` "
                 "documents only. Reference endpoints beyond these belong to other Azure services "
                 "and were dropped.",
    },
    "azure_ai/agents": {
        "adapter": "unsupported",
        "notes": "Azure AI Foundry Agent Service (threads and runs), not a model endpoint.",
    },
    "azure_ai/doc-intelligence": {
        "adapter": "unsupported",
        "notes": "Azure AI Document Intelligence is a document-analysis (OCR) service with its own "
                 "asynchronous analyze API; no adapter in this build.",
    },
    "bedrock": {
        "adapter": "bedrock",
        "auth": "sigv4",
        "endpoints": ["chat", "embeddings"],
        "base_url": "https://bedrock-runtime.{region}.amazonaws.com",
        "notes": "Checked against AWS docs: Bedrock Runtime (Converse / InvokeModel, model id in the "
                 "URL path) signed with AWS SigV4 (service `bedrock`) from AWS_ACCESS_KEY_ID, "
                 "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_REGION; Bedrock API keys "
                 "(`Authorization: Bearer`, AWS_BEARER_TOKEN_BEDROCK) are an alternative. Needs the "
                 "native adapter. `/v1/embeddings` is InvokeModel (`/model/{id}/invoke`) for Amazon "
                 "Titan Text Embeddings (V2: `dimensions` 256/512/1024, `normalize: true`; one text "
                 "per request, so an `input` array of more than one is a 400 naming `input`) and "
                 "Cohere Embed v3 (`texts`, up to 96; `input_type` from the request, default "
                 "`search_document`); usage is Titan's `inputTextTokenCount`, and is left out for "
                 "Cohere, whose count is only in a response header. Image-size pricing keys were "
                 "dropped from the model prefixes.",
    },
    "sagemaker": {
        "adapter": "unsupported",
        "auth": "sigv4",
        "base_url": "https://runtime.sagemaker.{region}.amazonaws.com",
        "notes": "Not served: this legacy route needs each model's chat template to turn chat "
                 "messages into a prompt, and the proxy has none; use `sagemaker_chat/<endpoint>`. "
                 "The route speaks Hugging Face TGI's text-generation shape (`{inputs, parameters}` "
                 "in, `[{generated_text}]` out); the reference fetches the template from the "
                 "Hugging Face Hub at run time, and a guessed one would silently degrade answers. "
                 "`sagemaker_chat` serves endpoints whose container takes the OpenAI chat schema on "
                 "`/invocations` (LMI, TGI's Messages API, vLLM). Checked against AWS docs: "
                 "InvokeEndpoint (`/endpoints/{name}/invocations`) signed with AWS SigV4.",
    },
    "sagemaker_chat": {
        "adapter": "sagemaker",
        "auth": "sigv4",
        "base_url": "https://runtime.sagemaker.{region}.amazonaws.com",
        "notes": "Checked against the SageMaker Runtime API reference and the LMI and TGI "
                 "container docs: the model id is the endpoint name; chat is InvokeEndpoint "
                 "(`POST /endpoints/{name}/invocations`), streams are "
                 "InvokeEndpointWithResponseStream (`/invocations-response-stream`, AWS event-stream "
                 "frames whose `PayloadPart` bytes carry the container's SSE or JSON lines), both "
                 "SigV4-signed for service `sagemaker` with `aws_access_key_id` / "
                 "`aws_secret_access_key` / `aws_session_token` (or the AWS_* variables) and "
                 "`aws_region` (or AWS_REGION), which also fills `{region}`. The body is the "
                 "client's OpenAI chat body with `model` set to the endpoint name; answers are "
                 "normalised (LMI's `eos_token` finish reasons, TGI's object tool-call arguments). "
                 "`ModelStreamError` / `InternalStreamFailure` events end a stream with an error "
                 "event; a `ModelError` (424) maps by the container's `OriginalStatusCode`. "
                 "Endpoints with inference components (`X-Amzn-SageMaker-Inference-Component`) "
                 "are not addressable yet.",
    },
    "aws_polly": {
        "adapter": "unsupported",
        "auth": "sigv4",
        "base_url": "https://polly.{region}.amazonaws.com",
        "endpoints": ["audio_speech"],
        "notes": "Amazon Polly is a text-to-speech service with its own SigV4-signed API "
                 "(SynthesizeSpeech); no adapter in this build.",
    },
    "watsonx": {
        "adapter": "watsonx",
        "auth": "oauth",
        "base_url": "https://{region}.ml.cloud.ibm.com",
        "env_var": "WATSONX_APIKEY",
        "requires_base_url": True,
        "endpoints": ["chat"],
        "notes": "Checked against IBM docs: the IBM Cloud API key (`api_key`, or WATSONX_APIKEY, "
                 "this project's name) is exchanged at https://iam.cloud.ibm.com/identity/token "
                 "(`watsonx_iam_url`) for a short-lived IAM bearer token, which the `watsonx` adapter "
                 "caches and refreshes before it expires; chat is `{base_url}/ml/v1/text/chat"
                 "?version=2024-05-31` (`api_version` overrides the date; `/ml/v1/text/chat_stream` "
                 "for streams) with `model_id` and `project_id` or `space_id` (`watsonx_project_id` / "
                 "`watsonx_space_id`) in the body. The region is part of the host, so set `base_url` "
                 "(e.g. https://us-south.ml.cloud.ibm.com). The reference's `audio` endpoint is a "
                 "separate IBM service and was dropped.",
    },
    "watsonx_text": {
        "adapter": "watsonx",
        "auth": "oauth",
        "base_url": "https://{region}.ml.cloud.ibm.com",
        "env_var": "WATSONX_APIKEY",
        "requires_base_url": True,
        "endpoints": ["chat"],
        "notes": "watsonx.ai text generation (`/ml/v1/text/generation?version=...`) with an IAM token "
                 "exchanged from the IBM Cloud API key. The `watsonx` adapter translates chat "
                 "completions only (to the chat API, as for `watsonx`); legacy `/completions` "
                 "requests are refused with a 400.",
    },
    "cohere": {
        "base_url": "https://api.cohere.ai/compatibility/v1",
        "endpoints": ["chat", "embeddings"],
        "model_prefixes": ["command-", "embed-"],
        "notes": "Checked against Cohere's docs: routed through Cohere's documented OpenAI "
                 "Compatibility API (`https://api.cohere.ai/compatibility/v1`: chat completions and "
                 "embeddings, Bearer key). The reference pointed at the native v1 API, which is not "
                 "OpenAI-shaped. Rerank exists only in the native API, so Cohere's `rerank-` models "
                 "resolve to `cohere_chat`, which translates it. The `command-` prefix moved here "
                 "from `cohere_chat` so un-prefixed Command models resolve to a routable provider. "
                 "Cohere's SDKs read CO_API_KEY; this project keeps COHERE_API_KEY.",
    },
    "cohere_chat": {
        "adapter": "cohere",
        "base_url": "https://api.cohere.com/v2",
        "endpoints": ["chat", "embeddings", "rerank"],
        "model_prefixes": ["rerank-v", "rerank-english-", "rerank-multilingual-"],
        "notes": "Checked against Cohere's API reference: Cohere's native v2 API (`Authorization: "
                 "Bearer`), translated by the `cohere` adapter. Chat (`POST {base_url}/chat`) has "
                 "its own request, response and streaming-event shapes (`message-start` ... "
                 "`message-end`), tools, images and streams included, with Cohere's `billed_units` "
                 "as the usage. Embeddings go to `/embed` (`texts`, required `input_type`, default "
                 "`search_document`, `embedding_types: [\"float\"]`; base64 is encoded by the "
                 "proxy; usage from `meta.billed_units.input_tokens`). Rerank goes to `/rerank` "
                 "(documents as strings; v2 never returns documents, so for `return_documents` the "
                 "proxy fills them in from the request; billed in search units, reported in "
                 "`meta`, not as token usage). "
                 "Cohere's rerank model ids (`rerank-v3.5`, `rerank-english-v3.0`, ...) resolve "
                 "here; Voyage's (`rerank-2`, ...) resolve to `voyage`. Use other models as "
                 "`cohere_chat/<model>`; the `cohere` provider reaches chat and embeddings through "
                 "Cohere's OpenAI Compatibility API instead.",
    },
    "voyage": {
        "adapter": "voyage",
        "endpoints": ["embeddings", "rerank"],
        "model_prefixes": ["voyage-", "rerank-1", "rerank-2", "rerank-lite-"],
        "notes": "Checked against Voyage AI's API reference: https://api.voyageai.com/v1 with "
                 "`Authorization: Bearer`. Embeddings (`/embeddings`: `input_type`, "
                 "`output_dimension`, answers `data[].index` and `usage.total_tokens`) and rerank "
                 "(`/rerank`: `top_k`, `return_documents`, answers `data[]`) are close to OpenAI's "
                 "and Cohere's shapes but not the same, so the `voyage` adapter translates them. "
                 "Errors are `{\"detail\"}`. Voyage's rerank ids (`rerank-2.5`, `rerank-2-lite`, "
                 "`rerank-lite-1`) resolve here, Cohere's (`rerank-v3.5`) to `cohere_chat`.",
    },
    "jina_ai": {
        "adapter": "jina",
        "endpoints": ["embeddings", "rerank"],
        "model_prefixes": ["jina-"],
        "notes": "Checked against Jina AI's API reference: https://api.jina.ai/v1 with "
                 "`Authorization: Bearer`. Embeddings (`/embeddings`, with Jina's `task`, "
                 "`dimensions`, `embedding_type`, `late_chunking`) and rerank (`/rerank`, which "
                 "returns documents unless told not to) are translated by the `jina` adapter; "
                 "errors are `{\"detail\"}`. Jina's docs name the key JINA_API_KEY; this project "
                 "keeps JINA_AI_API_KEY.",
    },
    "mistral": {
        "adapter": "mistral",
        "endpoints": ["chat", "completions", "embeddings", "moderations", "ocr",
                      "audio_transcriptions"],
        "model_prefixes": ["mistral-", "codestral-", "devstral-", "magistral-", "ministral-",
                           "pixtral-", "open-mistral-", "open-mixtral-", "open-codestral-"],
        "notes": "Checked against Mistral's API docs: https://api.mistral.ai/v1 with "
                 "`Authorization: Bearer`. Chat (streams included), embeddings, OCR (`/v1/ocr`, "
                 "Mistral's own shape) and transcriptions are forwarded as sent with only `model` "
                 "replaced; the native `mistral` adapter exists because Mistral refuses unknown "
                 "fields (422), `stream_options` included, so nothing is added (its streams report "
                 "usage in the last chunk anyway). Completions are Codestral fill-in-the-middle "
                 "(see `text-completion-codestral`). Moderations are translated: Mistral's categories "
                 "are mapped to OpenAI's where they correspond and kept by name otherwise, and "
                 "`flagged` is computed. Model prefixes for Mistral's own model families were added.",
    },
    "codestral": {
        "notes": "Mistral's Codestral endpoint (its own key). Chat at `/v1/chat/completions`; "
                 "fill-in-the-middle (`/v1/fim/completions`) is Mistral-specific and not routed "
                 "here (see `text-completion-codestral`).",
    },
    "text-completion-codestral": {
        "adapter": "mistral",
        "endpoints": ["completions"],
        "model_prefixes": [],
        "notes": "Checked against Mistral's API docs: Codestral fill-in-the-middle (`POST "
                 "/v1/fim/completions`, `prompt` + `suffix`, answered in the chat completion shape) "
                 "is not OpenAI's `/completions` shape; the native `mistral` adapter translates "
                 "OpenAI completions to it and back (`seed` becomes `random_seed`). Streaming "
                 "completions are refused with a 400 for now. The reference's bare `text-` model "
                 "prefix was dropped: it would capture OpenAI's `text-embedding-*` models.",
    },
    "groq": {
        "endpoints": ["chat", "audio_speech", "audio_transcriptions", "responses"],
        "notes": "Checked against Groq's OpenAI-compatibility docs: base "
                 "https://api.groq.com/openai/v1, Bearer key; a few OpenAI fields (logprobs, "
                 "logit_bias, top_logprobs, messages[].name, n > 1) are rejected with 400. Text to "
                 "speech is OpenAI's `/audio/speech` on the same base.",
    },
    "deepseek": {
        "base_url": "https://api.deepseek.com",
        "notes": "Checked against DeepSeek's API docs: base https://api.deepseek.com "
                 "(https://api.deepseek.com/v1 also accepted), Bearer key. The reference used "
                 "https://api.deepseek.com/beta, which DeepSeek documents only for beta features "
                 "(FIM, chat prefix completion).",
    },
    "together_ai": {
        "base_url": "https://api.together.ai/v1",
        "endpoints": ["chat", "completions", "embeddings", "images", "audio_speech",
                      "audio_transcriptions", "rerank"],
        "notes": "Checked against Together's OpenAI-compatibility docs: base "
                 "https://api.together.ai/v1 (the reference's api.together.xyz is the older host "
                 "name), Bearer key; model ids are `org/model`. Its Rerank API (`/rerank`) is "
                 "Cohere-compatible, so it is forwarded as-is. Together's docs name the key "
                 "TOGETHER_API_KEY; this project keeps TOGETHER_AI_API_KEY.",
    },
    "fireworks_ai": {
        "endpoints": ["chat", "completions", "embeddings", "rerank"],
        "model_prefixes": ["accounts/fireworks/"],
        "notes": "Checked: OpenAI-compatible at https://api.fireworks.ai/inference/v1 with a Bearer "
                 "key. Model ids are `accounts/fireworks/models/...`, which is now the inference "
                 "prefix. Fireworks' docs name the key FIREWORKS_API_KEY; this project keeps "
                 "FIREWORKS_AI_API_KEY.",
    },
    "openrouter": {
        "endpoints": ["chat", "completions", "embeddings"],
        "notes": "Checked: `https://openrouter.ai/api/v1/chat/completions` with `Authorization: "
                 "Bearer`; the optional `HTTP-Referer` / `X-Title` attribution headers are not sent.",
    },
    "xai": {
        "endpoints": ["chat", "images", "responses"],
        "model_prefixes": ["grok-"],
        "notes": "Checked against xAI's docs: OpenAI-compatible at https://api.x.ai/v1, Bearer key.",
    },
    "perplexity": {
        "model_prefixes": ["sonar"],
        "notes": "Checked against Perplexity's docs: OpenAI-compatible chat at "
                 "https://api.perplexity.ai/chat/completions (an alias of the canonical `/v1/sonar`), "
                 "Bearer key. Perplexity's docs name the key PERPLEXITY_API_KEY; this project keeps "
                 "PERPLEXITYAI_API_KEY.",
    },
    "cerebras": {
        "notes": "Checked against Cerebras' docs: OpenAI-compatible at https://api.cerebras.ai/v1 "
                 "with a Bearer key.",
    },
    "deepinfra": {
        "endpoints": ["chat", "completions", "embeddings"],
        "notes": "Checked against DeepInfra's docs: the OpenAI-compatible API is under "
                 "https://api.deepinfra.com/v1/openai (not /v1), Bearer key. Rerank is not part of "
                 "that API and was dropped from the endpoints.",
    },
    "nvidia_nim": {
        "endpoints": ["chat", "embeddings"],
        "notes": "Checked against NVIDIA's NIM docs: chat completions and embeddings are "
                 "OpenAI-compatible at https://integrate.api.nvidia.com/v1 with a Bearer key. NIM "
                 "reranking is not: it is `POST /v1/ranking` (hosted: "
                 "ai.api.nvidia.com/v1/retrieval/nvidia/reranking) with `query: {text}` and "
                 "`passages` answered by `rankings[].logit`, so the reference's `rerank` was dropped "
                 "until an adapter translates it.",
    },
    "huggingface": {
        "base_url": "https://router.huggingface.co/v1",
        "endpoints": ["chat"],
        "notes": "Checked: Hugging Face Inference Providers expose an OpenAI-compatible chat API at "
                 "https://router.huggingface.co/v1 with an HF token as Bearer. The reference's "
                 "api-inference.huggingface.co is the retired serverless endpoint; embeddings and "
                 "rerank are not on the OpenAI-compatible router. Hugging Face's docs name the token "
                 "HF_TOKEN; this project keeps HUGGINGFACE_API_KEY.",
    },
    "github": {
        "base_url": "https://models.github.ai/inference",
        "notes": "Checked against GitHub's docs: GitHub Models inference at "
                 "`https://models.github.ai/inference/chat/completions` with a personal access token "
                 "(models scope) as Bearer; model ids are `publisher/model`, e.g. `openai/gpt-4.1`. "
                 "The reference's https://models.inference.ai.azure.com is the older endpoint.",
    },
    "gradient_ai": {
        "base_url": "https://inference.do-ai.run/v1",
        "endpoints": ["chat", "embeddings"],
        "notes": "Checked against DigitalOcean's docs: serverless inference is OpenAI-compatible at "
                 "https://inference.do-ai.run/v1 with a model access key as Bearer. The reference's "
                 "base URL lacked `/v1`.",
    },
    "aiml": {
        "base_url": "https://api.aimlapi.com/v1",
        "notes": "Checked: AI/ML API's OpenAI-compatible base is https://api.aimlapi.com/v1 (the "
                 "reference lacked `/v1`), Bearer key.",
    },
    "helicone": {
        "base_url": "https://ai-gateway.helicone.ai/v1",
        "notes": "Helicone's AI Gateway is OpenAI-compatible; its integrations document "
                 "https://ai-gateway.helicone.ai/v1 as the base with the Helicone key as Bearer.",
    },
    "sarvam": {
        "notes": "Checked against Sarvam's docs: chat at https://api.sarvam.ai/v1/chat/completions "
                 "accepts the key as `Authorization: Bearer` (its SDKs use an "
                 "`api-subscription-key` header instead).",
    },
    "docker_model_runner": {
        "base_url": "http://localhost:12434/engines/v1",
        "notes": "Checked against Docker's docs: the host-side TCP port defaults to 12434 (`docker "
                 "desktop enable model-runner --tcp 12434`) and the OpenAI-compatible API is under "
                 "`/engines/v1` (or `/engines/llama.cpp/v1`). The reference's "
                 "http://localhost:22088/engines/llama.cpp used another port and lacked `/v1`.",
    },
    # ------------------------------------------------ local / self-hosted servers
    "ollama": {
        "base_url": "http://localhost:11434/v1",
        "endpoints": ["chat", "completions", "embeddings"],
        "notes": "Checked against Ollama's docs: OpenAI-compatible API at http://localhost:11434/v1 "
                 "(no key needed locally). The reference gave the server root, where "
                 "`/chat/completions` does not exist. For Ollama's native chat API (`/api/chat`) "
                 "use the provider `ollama_chat`.",
    },
    "ollama_chat": {
        "added": True,
        "display_name": "Ollama (native API)",
        "adapter": "ollama",
        "auth": "bearer",
        "base_url": "http://localhost:11434",
        "endpoints": ["chat"],
        "notes": "Added by this project (not in the reference); the name is LiteLLM's for the same "
                 "route. Checked against Ollama's API docs: the native `POST {base_url}/api/chat` "
                 "(base http://localhost:11434, no `/v1`), translated by the `ollama` adapter: "
                 "images as base64 `images` per message (`data:` URLs only), tool calls with "
                 "object arguments and `tool_name` on tool results, `format` from "
                 "`response_format` (`json` or the JSON schema), `options` (`temperature`, `top_p`, "
                 "`seed`, `stop`, `num_predict` from `max_tokens`, penalties), `think` from "
                 "`reasoning_effort`; the NDJSON stream becomes OpenAI chunks with usage from "
                 "`prompt_eval_count` / `eval_count`. No key is needed locally; a configured "
                 "`api_key` is sent as `Authorization: Bearer` (Ollama's cloud API, "
                 "https://ollama.com, takes an OLLAMA_API_KEY that way). `tool_choice` "
                 "`required` or a named function is refused (Ollama cannot force a tool call). "
                 "Provider `ollama` is the OpenAI-compatible `/v1` API instead.",
    },
    "vllm": {
        "auth": "bearer",
        "endpoints": ["chat", "completions", "embeddings", "rerank", "audio_transcriptions"],
        "notes": "Checked against vLLM's docs: `vllm serve` runs an OpenAI-compatible server, by "
                 "default at http://localhost:8000/v1; set `base_url` for any other host. "
                 + SELF_HOSTED_KEY + " (the server's `--api-key`).",
    },
    "hosted_vllm": {
        "adapter": "openai",
        "auth": "bearer",
        "requires_base_url": True,
        "env_var": "HOSTED_VLLM_API_KEY",
        "endpoints": ["chat", "completions", "embeddings", "rerank", "audio_transcriptions"],
        "notes": "Checked against vLLM's docs: a vLLM OpenAI-compatible server wherever it runs; set "
                 "`base_url` (e.g. http://host:8000/v1). A key is only needed if the server was "
                 "started with `--api-key` (sent as Bearer). The reference listed batch and files "
                 "endpoints, which vLLM's server does not serve.",
    },
    "lmstudio": {
        "auth": "bearer",
        "endpoints": ["chat", "completions", "embeddings", "responses"],
        "notes": "Checked against LM Studio's docs: OpenAI-compatible endpoints at "
                 "http://localhost:1234/v1 (models, responses, chat completions, completions, "
                 "embeddings). " + SELF_HOSTED_KEY + " (LM Studio's \"Require Authentication\").",
    },
    "llamacpp": {
        "auth": "bearer",
        "notes": "llama.cpp's `llama-server` (OpenAI-compatible, default port 8080). " + SELF_HOSTED_KEY,
    },
    "localai": {
        "auth": "bearer",
        "notes": "LocalAI's OpenAI-compatible server. " + SELF_HOSTED_KEY,
    },
    "oobabooga": {
        "auth": "bearer",
        "endpoints": ["chat", "completions"],
        "notes": "text-generation-webui's OpenAI-compatible API extension (default port 5000). "
                 + SELF_HOSTED_KEY + " The reference's audio, batch and moderation endpoints are not "
                 "part of that API.",
    },
    "xinference": {
        "auth": "bearer",
        "endpoints": ["chat", "completions", "embeddings", "rerank"],
        "notes": "Xorbits Inference serves chat, completion, embedding and rerank models through an "
                 "OpenAI-compatible API (default http://localhost:9997/v1). " + SELF_HOSTED_KEY,
    },
    "infinity": {
        "adapter": "openai",
        "auth": "bearer",
        "requires_base_url": True,
        "endpoints": ["embeddings", "rerank"],
        "notes": "A self-hosted Infinity embedding/rerank server with an OpenAI-compatible "
                 "`/embeddings` route; set `base_url` (e.g. http://localhost:7997). " + SELF_HOSTED_KEY,
    },
    "litellm_proxy": {
        "adapter": "openai",
        "auth": "bearer",
        "requires_base_url": True,
        "env_var": "LITELLM_PROXY_API_KEY",
        "endpoints": ["chat", "completions", "embeddings", "images", "audio_speech",
                      "audio_transcriptions", "moderations", "rerank", "ocr", "files", "batches",
                      "responses"],
        "notes": "A LiteLLM proxy is itself an OpenAI-compatible server; set `base_url` to it. It "
                 "serves the OpenAI endpoints plus Cohere-style `/v1/rerank` and Mistral-style "
                 "`/v1/ocr` (the reference listed only chat, embeddings and images). Its web search "
                 "lives at `/v1/search/{tool}`, not `/v1/search`, so search is not routed.",
    },
    "custom_openai": {
        "adapter": "openai",
        "auth": "bearer",
        "requires_base_url": True,
        "endpoints": ALL_OPENAI_ENDPOINTS,
        "notes": "Any OpenAI-compatible server; set `base_url` (and `api_key` if it needs one). "
                 "Which endpoints work depends on the server.",
    },
    "openai_like": {
        "adapter": "openai",
        "auth": "bearer",
        "requires_base_url": True,
        "endpoints": ALL_OPENAI_ENDPOINTS,
        "notes": "Any OpenAI-compatible server; set `base_url` (and `api_key` if it needs one). "
                 "Which endpoints work depends on the server.",
    },
    # -------------------------- complex providers that are OpenAI-compatible after all
    "cloudflare": {
        "adapter": "openai",
        "auth": "bearer",
        "base_url": "https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1",
        "env_var": "CLOUDFLARE_API_KEY",
        "requires_base_url": True,
        "endpoints": ["chat", "embeddings", "responses"],
        "model_prefixes": ["@cf/", "@hf/"],
        "notes": "Checked against Cloudflare's docs: Workers AI has OpenAI-compatible endpoints at "
                 "`https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1` (chat "
                 "completions, embeddings, responses) with an API token as Bearer. The account id is "
                 "part of the URL, so set `base_url`. Model ids look like "
                 "`@cf/meta/llama-3.1-8b-instruct`.",
    },
    "databricks": {
        "adapter": "openai",
        "auth": "bearer",
        "base_url": "https://{workspace_host}/serving-endpoints",
        "env_var": "DATABRICKS_TOKEN",
        "requires_base_url": True,
        "endpoints": ["chat", "completions", "embeddings"],
        "model_prefixes": ["databricks-"],
        "notes": "Checked against Databricks' docs: Model Serving has an OpenAI-compatible API; point "
                 "it at `https://<workspace-host>/serving-endpoints` with a Databricks token as Bearer "
                 "and use the serving endpoint name (e.g. `databricks-meta-llama-3-3-70b-instruct`) as "
                 "the model. The workspace host is per customer, so set `base_url`.",
    },
    "snowflake": {
        "adapter": "openai",
        "auth": "bearer",
        "base_url": "https://{account_identifier}.snowflakecomputing.com/api/v2/cortex/v1",
        "env_var": "SNOWFLAKE_PAT",
        "requires_base_url": True,
        "notes": "Checked against Snowflake's docs: the Cortex REST API has an OpenAI-compatible Chat "
                 "Completions endpoint at `https://<account-identifier>.snowflakecomputing.com/api/v2/"
                 "cortex/v1/chat/completions`, authenticated with a programmatic access token (PAT) "
                 "as Bearer. Set `base_url` for your account. SNOWFLAKE_PAT is this project's name "
                 "for the token.",
    },
    "oci": {
        "adapter": "openai",
        "auth": "bearer",
        "base_url": "https://inference.generativeai.{region}.oci.oraclecloud.com/openai/v1",
        "env_var": "OCI_GENAI_API_KEY",
        "requires_base_url": True,
        "endpoints": ["chat", "responses"],
        "notes": "Checked against Oracle's docs: OCI Generative AI has OpenAI-compatible endpoints at "
                 "`https://inference.generativeai.<region>.oci.oraclecloud.com/openai/v1` (Chat "
                 "Completions, Responses) authenticated with an OCI Generative AI API key in the "
                 "Authorization header; the key must be in the model's region. OCI IAM request "
                 "signing (the native API) is not supported here. Set `base_url` for your region. "
                 "OCI_GENAI_API_KEY is this project's name for the key.",
    },
    "datarobot": {
        "adapter": "openai",
        "base_url": "https://app.datarobot.com/api/v2/genai/llmgw",
        "notes": "Checked against DataRobot's docs: the LLM gateway is OpenAI-compatible at "
                 "`<api endpoint>/genai/llmgw`, usually https://app.datarobot.com/api/v2/genai/llmgw "
                 "(EU and JP clouds use app.eu / app.jp), with the DataRobot API token as Bearer. The "
                 "reference's bare https://app.datarobot.com has no chat endpoint.",
    },
    "baseten": {
        "adapter": "openai",
        "notes": "Baseten Model APIs are OpenAI-compatible at https://inference.baseten.co/v1 with a "
                 "Bearer key; dedicated deployments have their own URLs, so set `base_url` for those.",
    },
    "heroku": {
        "adapter": "openai",
        "auth": "bearer",
        "base_url": "https://us.inference.heroku.com/v1",
        "env_var": "INFERENCE_KEY",
        "endpoints": ["chat", "embeddings", "images"],
        "notes": "Checked against Heroku Dev Center: Managed Inference serves OpenAI-compatible "
                 "`/v1/chat/completions`, `/v1/embeddings` and `/v1/images/generations` at the app's "
                 "INFERENCE_URL with INFERENCE_KEY as Bearer (both set by the add-on). The default "
                 "assumes the US host; set `base_url` to `$INFERENCE_URL/v1` if yours differs.",
    },
    "predibase": {
        "base_url": "https://serving.app.predibase.com/{tenant_id}/deployments/v2/llms/{deployment}/v1",
        "requires_base_url": True,
        "notes": "Checked against Predibase's docs: OpenAI-compatible per deployment at "
                 "`https://serving.app.predibase.com/<tenant_id>/deployments/v2/llms/<deployment>/v1`; "
                 "the model field names the adapter (empty for the base model). Tenant and "
                 "deployment are part of the URL, so set `base_url`. The reference's bare "
                 "https://serving.app.predibase.com has no chat endpoint.",
    },
    "ragflow": {
        "adapter": "openai",
        "auth": "bearer",
        "base_url": "http://{host}/api/v1/chats_openai/{chat_id}",
        "env_var": "RAGFLOW_API_KEY",
        "requires_base_url": True,
        "notes": "RAGFlow serves OpenAI-compatible chat per chat assistant at "
                 "`/api/v1/chats_openai/<chat_id>/chat/completions` (agents: "
                 "`/api/v1/agents_openai/<agent_id>`); set `base_url` to the part before "
                 "`/chat/completions`.",
    },
    # ------------------------------------------------------------- unsupported
    "a2a": {"adapter": "unsupported",
            "notes": "A2A is an agent-to-agent protocol (JSON-RPC tasks and messages), not an "
                     "OpenAI-style model API."},
    "auto_router": {"adapter": "unsupported",
                    "notes": "A routing feature of the reference implementation (it picks a model by "
                             "semantic match), not an upstream provider."},
    "chatgpt": {"adapter": "unsupported",
                "notes": "Uses a ChatGPT subscription's login session (OAuth), not an API key; there "
                         "is no public API to route to."},
    "cursor": {"adapter": "unsupported",
               "notes": "Cursor's bring-your-own-key mode is a client feature, not an inference API."},
    "custom": {"adapter": "unsupported",
               "notes": "In the reference this is a hook for in-process Python handlers, with no "
                        "remote API behind it. For an OpenAI-compatible server use `openai_like` or "
                        "`custom_openai` with a `base_url`."},
    "github_copilot": {"adapter": "unsupported",
                       "notes": "GitHub Copilot's chat API needs a Copilot session token obtained "
                                "through GitHub's OAuth device flow and is meant for Copilot "
                                "clients, not for API-key access."},
    "gigachat": {"adapter": "unsupported",
                 "auth": "oauth",
                 "notes": "GigaChat's chat API is OpenAI-like, but every call needs a short-lived "
                          "access token obtained by OAuth2 from a separate endpoint with the "
                          "authorization key, and its TLS certificates chain to the Russian national "
                          "CA; no adapter in this build."},
    "manus": {"adapter": "unsupported",
              "notes": "Manus is an agent service (tasks and files), not an OpenAI-style model API."},
    "petals": {"adapter": "unsupported",
               "notes": "Petals runs models over a peer-to-peer swarm through its Python client; "
                        "there is no maintained HTTP API to route to."},
    "pydantic_ai_agents": {"adapter": "unsupported",
                           "notes": "An agent framework, not a model provider."},
    "milvus": {"adapter": "unsupported",
               "notes": "Milvus is a vector database, not a model provider."},
    "pg_vector": {"adapter": "unsupported",
                  "notes": "pgvector is a PostgreSQL vector store, not a model provider."},
    "s3_vectors": {"adapter": "unsupported",
                   "notes": "Amazon S3 Vectors is a vector store, not a model provider."},
    "sap": {"adapter": "unsupported",
            "auth": "oauth",
            "notes": "SAP generative AI hub (AI Core) needs an OAuth2 client-credentials token, a "
                     "per-deployment URL and an `AI-Resource-Group` header; no adapter in this build."},
    "triton": {"adapter": "unsupported",
               "requires_base_url": True,
               "notes": "NVIDIA Triton's native API is KServe v2 (`/v2/models/<model>/generate` or "
                        "`/infer`), not OpenAI-shaped. If you run Triton's OpenAI-compatible "
                        "frontend, use `openai_like` with its `base_url`."},
    "langgraph": {"adapter": "unsupported",
                  "notes": "A LangGraph server exposes threads and runs of deployed graphs (agents), "
                           "not an OpenAI-style model API."},
    "nlp_cloud": {"adapter": "unsupported",
                  "notes": "NLP Cloud's API is per model (`/v1/gpu/<model>/generation`, "
                           "`Authorization: Token ...`), not OpenAI-shaped; no adapter in this build."},
    "replicate": {"adapter": "unsupported",
                  "notes": "Replicate runs models as predictions (`POST /v1/models/<owner>/<name>/"
                           "predictions`, then poll or stream), not OpenAI chat completions; no "
                           "adapter in this build."},
    "deepgram": {"adapter": "deepgram",
                 "auth": "token",
                 "base_url": "https://api.deepgram.com/v1",
                 "endpoints": ["audio_speech", "audio_transcriptions"],
                 "notes": "Checked against Deepgram's API reference: a speech API with `Authorization: "
                          "Token <key>`. Transcriptions go to `POST /v1/listen` with the uploaded file's "
                          "bytes as the body and the OpenAI fields as query parameters (`model`, "
                          "`language`, `smart_format`; `detect_language` when no language is given, "
                          "`utterances` for srt/vtt/verbose_json); the answer is rewritten in the asked "
                          "`response_format`. Speech goes to `POST /v1/speak` (Aura voices) in all six "
                          "OpenAI formats; an `aura-...` `voice` picks the voice, otherwise the model's. "
                          "`prompt` and `temperature` are dropped; `speed` is refused. It has no chat "
                          "endpoint."},
    "elevenlabs": {"adapter": "elevenlabs",
                   "auth": "xi_api_key",
                   "base_url": "https://api.elevenlabs.io",
                   "endpoints": ["audio_speech", "audio_transcriptions"],
                   "notes": "Checked against ElevenLabs' API reference: `xi-api-key` header. Speech goes "
                            "to `POST /v1/text-to-speech/{voice_id}/stream` (the client's `voice` is the "
                            "voice id, `speed` becomes `voice_settings.speed`, 0.7-1.2) and is relayed "
                            "as it streams; mp3, opus, pcm (24 kHz) and wav (whole-file endpoint) are "
                            "offered, aac and flac are refused with a 400. Transcriptions go to "
                            "`POST /v1/speech-to-text` (Scribe) and are rewritten in the asked "
                            "`response_format`; `prompt` is dropped. It has no chat endpoint."},
    "fal_ai": {"adapter": "unsupported",
               "endpoints": ["images"],
               "notes": "fal.ai runs models through its own queue/run API (`Authorization: Key "
                        "<key>`), not OpenAI's; no adapter in this build."},
    "stability": {
        "adapter": "stability",
        "auth": "bearer",
        "base_url": "https://api.stability.ai",
        "endpoints": ["images"],
        "notes": "Checked against Stability AI's API reference: the v2beta Stable Image API "
                 "(`POST /v2beta/stable-image/generate/{ultra,core,sd3}`, multipart/form-data, "
                 "`Authorization: Bearer`, `Accept: application/json` for a base64 `image`). The "
                 "`stability` adapter serves OpenAI's `/v1/images/generations`: the model id picks "
                 "the service (`stable-image-ultra`, `stable-image-core`, `sd3.5-large`, ...), `size` "
                 "becomes `aspect_ratio`, answers are `b64_json`. One image per request: `n` > 1 and "
                 "`response_format: url` are refused with a 400.",
    },
    "runwayml": {"adapter": "unsupported",
                 "notes": "Runway's generation API is task-based (submit, then poll) and needs an "
                          "`X-Runway-Version` header; no adapter in this build."},
    "topaz": {"adapter": "unsupported",
              "notes": "Topaz Labs' image-enhancement API is neither a chat nor an OpenAI images API; "
                       "no adapter in this build."},
    "assemblyai": {
        "endpoints": ["chat"],
        "notes": "AssemblyAI's LLM Gateway (llm-gateway.assemblyai.com/v1) is the OpenAI-style part; "
                 "its speech-to-text API (api.assemblyai.com/v2/transcript) is not and is not routed. "
                 "Not independently checked.",
    },
    "bytez": {
        "base_url": "https://api.bytez.com/models/v2/openai/v1",
        "notes": "Checked (Bytez API docs as summarised by integrators): the OpenAI-compatible "
                 "endpoints live under https://api.bytez.com/models/v2/openai/v1; the reference's "
                 "https://api.bytez.com/models/v2 is the native API root. Bytez's native API takes "
                 "the raw key in `Authorization`; OpenAI clients send it as Bearer.",
    },
    "recraft": {
        "notes": "Recraft documents its image generation API as usable with the OpenAI SDK "
                 "(`/v1/images/generations`). Not independently checked.",
    },
    # Web search APIs.
    "brave": {
        "adapter": "brave",
        "auth": "x_subscription_token",
        "base_url": "https://api.search.brave.com/res/v1",
        "endpoints": ["search"],
        "model_prefixes": [],
        "notes": "Checked against Brave's Web Search API reference: `GET {base_url}/web/search?q=` "
                 "with an `X-Subscription-Token` header (the reference said bearer); `count` is at "
                 "most 20, `country` a supported two-letter code; results are `web.results[]` "
                 "(`title`, `url`, `description` with `<strong>` highlighting, `page_age`/`age`). "
                 "The domain filter becomes `site:` operators in `q`. An invalid token is a 422 "
                 "`SUBSCRIPTION_TOKEN_INVALID`, mapped to 502 `upstream_auth_failed`. Served by the "
                 "`brave` search adapter (`POST /v1/search`, e.g. model `brave/web-search`).",
    },
    "dataforseo": {"adapter": "unsupported",
                   "notes": SEARCH_ONLY + " It uses HTTP Basic auth (login and password)."},
    "duckduckgo": {"adapter": "unsupported", "notes": SEARCH_ONLY},
    "exa_ai": {
        "adapter": "exa",
        "auth": "x_api_key",
        "base_url": "https://api.exa.ai",
        "endpoints": ["search"],
        "model_prefixes": ["exa/"],
        "notes": "Checked against Exa's API reference: `POST {base_url}/search` with an `x-api-key` "
                 "header (Bearer is also accepted; the reference said bearer); `numResults` (at most "
                 "100), `includeDomains`/`excludeDomains`, `userLocation` (two-letter country), "
                 "`type` (`auto`, `neural`, `fast`, `deep`, ...) and `contents.highlights`; errors "
                 "are `{requestId, error, tag}`. Served by the `exa` search adapter; the model "
                 "prefix `exa/` lets `exa/search` or `exa/deep` (the search type) resolve here.",
    },
    "firecrawl": {
        "adapter": "firecrawl",
        "auth": "bearer",
        "base_url": "https://api.firecrawl.dev/v2",
        "endpoints": ["search"],
        "model_prefixes": [],
        "notes": "Checked against Firecrawl's v2 API reference and its open-source server: `POST "
                 "{base_url}/search` with `Authorization: Bearer`; `limit` (1-100), "
                 "`includeDomains`/`excludeDomains`, `country` (ISO code); results are "
                 "`data.web[]` (`url`, `title`, `description`); errors are `{success: false, "
                 "error}`. Served by the `firecrawl` search adapter (`POST /v1/search`).",
    },
    "google_pse": {"adapter": "unsupported",
                   "notes": SEARCH_ONLY + " Google's Custom Search JSON API takes the key as a `key` "
                                          "query parameter, not a bearer token."},
    "linkup": {
        "adapter": "linkup",
        "auth": "bearer",
        "base_url": "https://api.linkup.so/v1",
        "endpoints": ["search"],
        "model_prefixes": [],
        "notes": "Checked against Linkup's API reference: `POST {base_url}/search` with "
                 "`Authorization: Bearer`, required `q`, `depth` (`fast`, `standard`, `deep`) and "
                 "`outputType` (`searchResults` here), optional `maxResults` and "
                 "`includeDomains`/`excludeDomains`; results are `{type, name, url, content}` (image "
                 "results are skipped). Linkup has no country parameter, so `country` is ignored. "
                 "Served by the `linkup` search adapter (model `linkup/<depth>`).",
    },
    "parallel_ai": {"adapter": "unsupported", "notes": SEARCH_ONLY},
    "searxng": {
        "adapter": "searxng",
        "auth": "none",
        "requires_base_url": True,
        "endpoints": ["search"],
        "model_prefixes": [],
        "notes": "Checked against SearXNG's Search API docs: self-hosted, no key; `GET "
                 "{base_url}/search?q=&format=json` (the instance must list `json` in "
                 "`search.formats`, else it answers 403); results are `results[]` (`url`, `title`, "
                 "`content`, `publishedDate`). It has no result count or country parameter: the "
                 "proxy trims to `max_results`, adds `site:` operators and drops results outside "
                 "the domain filter itself; `country` is ignored. Served by the `searxng` search "
                 "adapter.",
    },
    "serper": {
        "adapter": "serper",
        "auth": "x_api_key",
        "base_url": "https://google.serper.dev",
        "endpoints": ["search"],
        "model_prefixes": [],
        "notes": "Checked against Serper's API docs: `POST {base_url}/search` with an `X-API-KEY` "
                 "header (the reference said bearer), body `q`, `num` (1-100), `gl` (lower-case "
                 "country); Google results in `organic[]` (`title`, `link`, `snippet`, `date`). The "
                 "domain filter becomes `site:` operators in `q`; a bad key is a 403 `{message, "
                 "statusCode}`. Served by the `serper` search adapter.",
    },
    "tavily": {
        "adapter": "tavily",
        "auth": "bearer",
        "base_url": "https://api.tavily.com",
        "endpoints": ["search"],
        "model_prefixes": [],
        "notes": "Checked against Tavily's API reference: `POST https://api.tavily.com/search` (the "
                 "reference's `/v1` base does not exist) with `Authorization: Bearer`; "
                 "`max_results` (0-20), `include_domains`/`exclude_domains`, `topic`, "
                 "`search_depth`, and `country` as a lowercase English country name (general topic "
                 "only); errors are `{detail: {error}}`, with 432/433 for plan limits. Served by the "
                 "`tavily` search adapter (model `tavily/search`, `tavily/news`, ...).",
    },
    "amazon_nova": {
        "adapter": "openai",
        "endpoints": ["chat", "responses"],
        "model_prefixes": ["nova-"],
        "notes": "Checked (integration docs for Amazon's Nova developer API): OpenAI-compatible at "
                 "https://api.nova.amazon.com/v1 with a Bearer key and model ids like `nova-2-lite-v1`; "
                 "this is Amazon's standalone Nova API, not Bedrock. The reference's `amazon-` / "
                 "`amazon-nova/` prefixes are not the service's model ids and were replaced by `nova-`. "
                 "Amazon's SDK integrations read NOVA_API_KEY; this project keeps AMAZON_NOVA_API_KEY.",
    },
}

PARAM_MAPPING_NOTE = ("The reference records that this upstream wants `max_tokens` instead of "
                      "`max_completion_tokens`; the pass-through adapter does not rewrite it.")


def derive(ref: dict, names: list[str], complex_set: set[str]) -> dict:
    """The entry as the reference data alone would give it (normalised, unchecked)."""
    name = ref["name"]
    auth = ref.get("auth", {})
    mapped = {n for e in ref.get("endpoints", []) for n in ENDPOINT_MAP[e]}
    endpoints = [n for n in ENDPOINTS if n in mapped]
    prefixes = []
    for p in ref.get("model_prefixes", []):
        if p in JUNK_PREFIXES:
            continue
        if any(p.startswith(other + "/") for other in names):
            continue
        if p not in prefixes:
            prefixes.append(p)
    entry = {
        "name": name,
        "display_name": ref["display_name"],
        # Normalised without a trailing slash: paths are appended as "/chat/completions".
        "base_url": ref["base_url"].rstrip("/") if ref.get("base_url") else None,
        "auth": auth.get("type", "none"),
        "env_var": auth.get("env_var"),
        "endpoints": endpoints,
        "model_prefixes": prefixes,
        "adapter": "openai" if name not in complex_set and ref.get("base_url") else "unsupported",
        "requires_base_url": False,
        "notes": UNVERIFIED,
    }
    if "param_mappings" in ref:
        entry["notes"] = UNVERIFIED + " " + PARAM_MAPPING_NOTE
    return entry


def build(reference: dict) -> tuple[list[dict], list[dict]]:
    refs = reference["providers"]
    names = [p["name"] for p in refs]
    complex_set = set(reference["complex_providers"])
    # Entries marked "added" are this project's own providers, absent from the
    # reference; they carry every field themselves and go after its entries.
    added = sorted(n for n, o in OVERRIDES.items() if o.get("added"))
    unknown = set(OVERRIDES) - set(names) - set(added)
    if unknown:
        sys.exit(f"overrides for providers not in the reference: {sorted(unknown)}")
    clashing = set(added) & set(names)
    if clashing:
        sys.exit(f"providers marked added are in the reference: {sorted(clashing)}")
    missing = {n for n in complex_set if "adapter" not in OVERRIDES.get(n, {})}
    if missing:
        sys.exit(f"complex providers without an explicit adapter override: {sorted(missing)}")

    derived, final = [], []
    extra = [{"name": n, "display_name": OVERRIDES[n]["display_name"]} for n in added]
    for ref in refs + extra:
        base = derive(ref, names, complex_set)
        entry = dict(base)
        for k, v in OVERRIDES.get(ref["name"], {}).items():
            entry[k] = list(v) if isinstance(v, list) else v
        entry.pop("added", None)
        unknown_eps = set(entry["endpoints"]) - set(ENDPOINTS)
        if unknown_eps:
            sys.exit(f"{ref['name']}: unknown endpoints {sorted(unknown_eps)}")
        entry["endpoints"] = [n for n in ENDPOINTS if n in entry["endpoints"]]
        if "param_mappings" in ref and PARAM_MAPPING_NOTE not in (entry["notes"] or ""):
            entry["notes"] = (entry["notes"] + " " + PARAM_MAPPING_NOTE).strip()
        validate(entry)
        derived.append(base)
        final.append(entry)
    check_prefixes(final)
    return derived, final


def validate(e: dict) -> None:
    name = e["name"]
    assert e["auth"] in AUTH_STYLES, (name, e["auth"])
    assert e["adapter"] in ADAPTERS, (name, e["adapter"])
    for ep in e["endpoints"]:
        assert ep in ENDPOINTS, (name, ep)
    if e["adapter"] == "openai":
        assert e["base_url"] or e["requires_base_url"], name
        if e["base_url"] and "{" in e["base_url"]:
            assert e["requires_base_url"], f"{name}: templated base_url needs requires_base_url"
        assert e["auth"] in {"bearer", "x_api_key", "api_key", "x_goog_api_key", "none"}, name


def check_prefixes(entries: list[dict]) -> None:
    owners = [(p, e["name"]) for e in entries for p in e["model_prefixes"]]
    for p, a in owners:
        for q, b in owners:
            if a != b and q.startswith(p):
                sys.exit(f"model prefix `{p}` ({a}) shadows `{q}` ({b})")


# ---------------------------------------------------------------- rendering

def toml_str(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


def render_toml(entries: list[dict]) -> str:
    lines = [
        "# Provider registry for liter-llm. GENERATED by tools/gen_registry.py: edit the generator,",
        "# not this file, then run `python3 tools/gen_registry.py`.",
        "#",
        "# Derived from the reference liter-llm project's schemas/providers.json (MIT licence,",
        "# itself generated from LiteLLM data, MIT), with hand-checked corrections. Each entry's",
        "# `notes` says what was checked against the provider's own documentation and what changed.",
        "#",
        "# Fields: see crates/providers/src/registry.rs (`ProviderSpec`). A `base_url` containing",
        "# {placeholders} is a template: the user must supply the concrete URL.",
        "",
    ]
    for e in entries:
        lines.append("[[provider]]")
        lines.append(f"name = {toml_str(e['name'])}")
        lines.append(f"display_name = {toml_str(e['display_name'])}")
        if e["base_url"]:
            lines.append(f"base_url = {toml_str(e['base_url'])}")
        lines.append(f"auth = {toml_str(e['auth'])}")
        if e["env_var"]:
            lines.append(f"env_var = {toml_str(e['env_var'])}")
        lines.append(f"endpoints = {toml_list(e['endpoints'])}")
        if e["model_prefixes"]:
            lines.append(f"model_prefixes = {toml_list(e['model_prefixes'])}")
        lines.append(f"adapter = {toml_str(e['adapter'])}")
        if e["requires_base_url"]:
            lines.append("requires_base_url = true")
        if e["notes"]:
            lines.append(f"notes = {toml_str(e['notes'])}")
        lines.append("")
    return "\n".join(lines)


# Native adapters this build has (crates/providers/src/adapters/mod.rs, native());
# tests/registry.rs checks the doc against that function.
IMPLEMENTED_NATIVE = {"anthropic", "azure_ai", "azure_openai", "bedrock", "brave", "cohere", "deepgram", "elevenlabs", "exa", "firecrawl", "gemini", "jina", "linkup", "mistral", "ollama", "sagemaker", "searxng", "serper", "stability", "tavily", "vertex_ai", "voyage", "watsonx"}


def status(e: dict) -> str:
    if e["adapter"] == "openai":
        return "routable (OpenAI-compatible)"
    if e["adapter"] == "unsupported":
        return "unsupported: " + first_sentence(e["notes"] or "not a model provider")
    if e["adapter"] in IMPLEMENTED_NATIVE:
        return f"routable (native `{e['adapter']}` adapter)"
    return "native adapter pending"


def first_sentence(text: str) -> str:
    for i, ch in enumerate(text):
        if ch == "." and (i + 1 == len(text) or text[i + 1] == " "):
            # Do not stop inside "e.g." and similar.
            if text[max(0, i - 3):i + 1].endswith(("e.g.", "i.e.")):
                continue
            return text[: i + 1]
    return text


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_doc(entries: list[dict]) -> str:
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["adapter"]] = counts.get(e["adapter"], 0) + 1
    routable = counts.get("openai", 0)
    unsupported = counts.get("unsupported", 0)
    native_done = sum(v for k, v in counts.items() if k in IMPLEMENTED_NATIVE)
    native = len(entries) - routable - unsupported - native_done
    out = [
        "# Providers",
        "",
        "<!-- GENERATED by tools/gen_registry.py from crates/providers/data/providers.toml. "
        "Do not edit by hand. -->",
        "",
        f"liter-llm knows {len(entries)} provider names. This table is generated from "
        "[`crates/providers/data/providers.toml`](../crates/providers/data/providers.toml), which "
        "`tools/gen_registry.py` derives from the reference liter-llm project's "
        "`schemas/providers.json` (MIT licence; itself generated from LiteLLM data, MIT) plus "
        "hand-checked corrections. That reference data contains mistakes (wrong auth styles, stale "
        "base URLs, providers listed as OpenAI-compatible that are not). Entries whose notes say "
        "\"Checked\" were compared with the provider's own published API documentation; the others "
        "keep the reference values and say so.",
        "",
        "Status in this build:",
        "",
        f"- **routable (OpenAI-compatible)** ({routable}): `adapter = \"openai\"`. Requests are "
        "forwarded to `{base_url}/chat/completions` (and the other endpoints listed) with only "
        "`model` rewritten. Where the base URL contains `{placeholders}` or is empty, set `base_url` "
        "on the model in the config.",
        f"- **routable (native adapter)** ({native_done}): requests, responses and streams are "
        "translated to and from the provider's own API (Anthropic Messages, Gemini, Azure OpenAI and "
        "AI Foundry, Bedrock Converse with SigV4, Cohere v2, Vertex AI Gemini and Claude with "
        "service-account OAuth2 tokens, watsonx.ai chat with IAM tokens, SageMaker chat endpoints with "
        "SigV4, Ollama's native chat API), each tested against a provider-faithful "
        "fake and through the official openai SDK.",
        f"- **native adapter pending** ({native}): the provider needs request/response translation or "
        "non-static auth (SigV4, OAuth, IAM). The proxy rejects these at config load with a clear "
        "reason until the adapter exists.",
        f"- **unsupported** ({unsupported}): not an LLM endpoint one can route to (vector stores, "
        "agent frameworks, web-search APIs, ...) or an API with no adapter planned; the reason is "
        "given.",
        "",
        "Counts per adapter: " + ", ".join(f"`{k}` {v}" for k, v in sorted(counts.items())) + ".",
        "",
        "A model is named `provider/model-id`, e.g. `groq/llama-3.3-70b-versatile`. The longest "
        "provider name followed by `/` wins (so `azure_ai/agents/x` is `azure_ai/agents`). An id "
        "without a known provider prefix is matched against the model prefixes below (longest "
        "wins), e.g. `claude-sonnet-4-5` resolves to `anthropic`. No provider's model prefix is a "
        "prefix of another provider's, so the match never depends on order.",
        "",
        "Auth styles: `bearer` = `Authorization: Bearer <key>`; `x_api_key` = `x-api-key: <key>`; "
        "`api_key` = `api-key: <key>`; `x_goog_api_key` = `x-goog-api-key: <key>`; `sigv4` = AWS "
        "Signature V4; `oauth` = short-lived token from an OAuth/IAM exchange; "
        "`x_subscription_token` = `X-Subscription-Token: <key>`; `token` = `Authorization: Token <key>`; "
        "`xi_api_key` = `xi-api-key: <key>`; `none` = no key.",
        "",
        "| name | display name | adapter | auth | key env var | base URL | endpoints | model prefixes | status in this build |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in entries:
        base = e["base_url"] or ""
        if e["requires_base_url"]:
            base = (f"`{base}` (set `base_url`)" if base else "(set `base_url`)")
        elif base:
            base = f"`{base}`"
        out.append("| " + " | ".join([
            f"`{e['name']}`",
            cell(e["display_name"]),
            f"`{e['adapter']}`",
            f"`{e['auth']}`",
            f"`{e['env_var']}`" if e["env_var"] else "",
            cell(base),
            ", ".join(e["endpoints"]),
            cell(", ".join(f"`{p}`" for p in e["model_prefixes"])),
            cell(status(e)),
        ]) + " |")
    out += render_search_section(entries)
    out += ["", "## Notes", ""]
    for e in entries:
        out.append(f"- **`{e['name']}`**: {e['notes']}")
    out.append("")
    return "\n".join(out)


def render_search_section(entries: list[dict]) -> list[str]:
    """The providers that serve `POST /v1/search`, and how each is reached."""
    native = [e for e in entries if "search" in e["endpoints"] and e["adapter"] in IMPLEMENTED_NATIVE]
    forwarded = [e for e in entries if "search" in e["endpoints"] and e["adapter"] == "openai"]
    out = [
        "",
        "## Search",
        "",
        "`POST /v1/search` (request and response: [endpoints.md](endpoints.md#search)) is served by "
        "these providers' native search adapters, which translate the OpenAI-style request "
        "(`query`, `max_results`, `search_domain_filter`, `country`) to each API and normalise the "
        "results to `{title, url, snippet, date}`. The part of the model id after the provider "
        "selects a mode where the provider has one; any other id uses the provider's defaults.",
        "",
        "| provider | name | adapter | auth | base URL | example model |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    # Rows lead with the display name: tests/registry.rs counts rows starting
    # "| `" as the provider table's.
    for e in native:
        prefix = e["model_prefixes"][0] if e["model_prefixes"] else f"{e['name']}/"
        base = e["base_url"] or "(set `base_url`)"
        if e["base_url"]:
            base = f"`{base}`"
        out.append(f"| {cell(e['display_name'])} | `{e['name']}` | `{e['adapter']}` | `{e['auth']}` | "
                   f"{cell(base)} | `{prefix}search` |")
    if forwarded:
        names = ", ".join(f"`{e['name']}`" for e in forwarded)
        out += ["", f"Forwarded unchanged to `{{base_url}}/search` (OpenAI-compatible providers that "
                    f"list `search`): {names}. Every other provider refuses `/v1/search` with 400 "
                    "`endpoint_not_supported` before anything is sent."]
    return out


def changes(derived: list[dict], final: list[dict]) -> str:
    lines = []
    for d, f in zip(derived, final):
        diffs = []
        for k in ("base_url", "auth", "env_var", "adapter", "requires_base_url", "endpoints",
                  "model_prefixes"):
            if d[k] != f[k]:
                diffs.append(f"{k}: {d[k]!r} -> {f[k]!r}")
        if diffs:
            lines.append(f"{f['name']}: " + "; ".join(diffs))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    ap.add_argument("--check", action="store_true", help="fail if the generated files are stale")
    ap.add_argument("--changes", action="store_true", help="print fields changed from the reference")
    args = ap.parse_args()

    reference = json.loads(args.reference.read_text())
    derived, final = build(reference)
    if args.changes:
        print(changes(derived, final))
        return 0
    outputs = {TOML_OUT: render_toml(final), DOC_OUT: render_doc(final)}
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, text in outputs.items()
                 if not p.exists() or p.read_text() != text]
        if stale:
            print("stale: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
