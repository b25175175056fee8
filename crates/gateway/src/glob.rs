//! `*` and `?` globs over model names, as used by `[[aliases]].pattern` and key
//! allow-lists. Model names are short, so a simple backtracking matcher is enough.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_string(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn is_literal(&self) -> bool {
        !self.pattern.contains(['*', '?'])
    }

    /// The text before the first wildcard, e.g. `anthropic/` for `anthropic/*`.
    pub fn literal_prefix(&self) -> &str {
        let end = self.pattern.find(['*', '?']).unwrap_or(self.pattern.len());
        &self.pattern[..end]
    }

    pub fn matches(&self, text: &str) -> bool {
        let p = self.pattern.as_bytes();
        let t = text.as_bytes();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        while pi < p.len() && p[pi] == b'*' {
            pi += 1;
        }
        pi == p.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn star_and_question_mark() {
        assert!(Glob::new("anthropic/*").matches("anthropic/claude-3"));
        assert!(!Glob::new("anthropic/*").matches("openai/gpt-4o"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("gpt-?o*").matches("gpt-4o-mini"));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYY"));
        assert_eq!(Glob::new("groq/llama*").literal_prefix(), "groq/llama");
    }
}
