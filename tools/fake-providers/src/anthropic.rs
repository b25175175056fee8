//! Anthropic Messages API fake (being written).
