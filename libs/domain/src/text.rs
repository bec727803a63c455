//! Free text a caller sends and we store, match on or show to people: display names, customer
//! references, reasons.

use crate::DomainError;

/// The rule for one free-text field: a length in characters, and no control characters. NUL
/// cannot be stored in PostgreSQL at all, and line breaks or terminal escapes in a reference or
/// reason would forge lines in the support desk's logs and screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    max_chars: usize,
    required: bool,
}

impl TextRule {
    /// Required: at least one non-blank character, at most `max_chars`.
    pub const fn required(max_chars: usize) -> Self {
        Self {
            max_chars,
            required: true,
        }
    }

    /// Optional: empty, or at most `max_chars`.
    pub const fn optional(max_chars: usize) -> Self {
        Self {
            max_chars,
            required: false,
        }
    }

    /// Checks `text`. The error says what is wrong, for an INVALID_ARGUMENT naming the field.
    pub fn check(self, text: &str) -> Result<(), DomainError> {
        let blank = text.trim().is_empty();
        let too_long = text.chars().count() > self.max_chars;
        if (self.required && blank) || too_long {
            let max = self.max_chars;
            return Err(DomainError::Text(if self.required {
                format!("must be 1-{max} characters, not blank")
            } else {
                format!("must be at most {max} characters")
            }));
        }
        if text.chars().any(char::is_control) {
            return Err(DomainError::Text(
                "must not contain control characters (NUL, line breaks, escapes)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_text_is_neither_blank_nor_over_length() {
        let rule = TextRule::required(5);
        assert!(rule.check("shop1").is_ok());
        assert!(
            rule.check("日本語").is_ok(),
            "the limit counts characters, not bytes"
        );
        for bad in ["", "   ", "shop12"] {
            assert_eq!(
                rule.check(bad),
                Err(DomainError::Text("must be 1-5 characters, not blank".into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn optional_text_may_be_empty() {
        let rule = TextRule::optional(3);
        assert!(rule.check("").is_ok());
        assert!(rule.check("abcd").is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        for bad in ["a\0b", "a\nb", "a\rb", "a\tb", "\u{1b}[31m", "\u{7f}"] {
            assert_eq!(
                TextRule::optional(100).check(bad),
                Err(DomainError::Text(
                    "must not contain control characters (NUL, line breaks, escapes)".into()
                )),
                "{bad:?}"
            );
        }
        // Emoji, combining marks and right-to-left scripts are text, not control characters.
        assert!(TextRule::required(100).check("👩‍👩‍👧 e\u{301} עברית").is_ok());
    }
}
