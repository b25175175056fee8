//! Gemini generateContent fake (being written).
