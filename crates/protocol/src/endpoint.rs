//! The OpenAI endpoints the gateway serves, and the facts about each that routing
//! and response handling depend on.

/// Which OpenAI endpoint a request is for. Every gateway layer applies to all of
/// them; only the upstream path, the body format and what a native adapter can
/// translate differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    /// Legacy text completions.
    Completions,
    Embeddings,
    ImageGenerations,
    AudioSpeech,
    AudioTranscriptions,
    Moderations,
    Rerank,
    Search,
    Ocr,
}

impl Endpoint {
    pub const ALL: [Endpoint; 10] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::ImageGenerations,
        Endpoint::AudioSpeech,
        Endpoint::AudioTranscriptions,
        Endpoint::Moderations,
        Endpoint::Rerank,
        Endpoint::Search,
        Endpoint::Ocr,
    ];

    /// Path under an OpenAI-compatible base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::ImageGenerations => "/images/generations",
            Endpoint::AudioSpeech => "/audio/speech",
            Endpoint::AudioTranscriptions => "/audio/transcriptions",
            Endpoint::Moderations => "/moderations",
            Endpoint::Rerank => "/rerank",
            Endpoint::Search => "/search",
            Endpoint::Ocr => "/ocr",
        }
    }

    /// Stable name, used in cache keys, spans and messages.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::ImageGenerations => "images.generations",
            Endpoint::AudioSpeech => "audio.speech",
            Endpoint::AudioTranscriptions => "audio.transcriptions",
            Endpoint::Moderations => "moderations",
            Endpoint::Rerank => "rerank",
            Endpoint::Search => "search",
            Endpoint::Ocr => "ocr",
        }
    }

    /// The endpoint's name in the provider registry's `endpoints` lists.
    pub fn registry_name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::ImageGenerations => "images",
            Endpoint::AudioSpeech => "audio_speech",
            Endpoint::AudioTranscriptions => "audio_transcriptions",
            Endpoint::Moderations => "moderations",
            Endpoint::Rerank => "rerank",
            Endpoint::Search => "search",
            Endpoint::Ocr => "ocr",
        }
    }

    /// Whether a `stream: true` request is an SSE stream of JSON chunks.
    pub fn streams_sse(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions)
    }

    /// Whether a successful answer is passed to the client as raw bytes while
    /// they arrive (audio), rather than read whole as JSON.
    pub fn streams_bytes(self) -> bool {
        self == Endpoint::AudioSpeech
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
