//! Blocked terms: a comment is refused when it contains one, compared case-insensitively after Unicode NFKC
//! normalisation (so full-width letters, ligatures and compatibility forms match their plain spelling), and as
//! whole words (a term of several words matches those words in a row). Words are the runs of alphanumeric
//! characters.

use unicode_normalization::UnicodeNormalization;

/// The words of `text`, normalised: NFKC, then lower case.
fn words(text: &str) -> Vec<String> {
    let normal: String = text.nfkc().collect::<String>().to_lowercase();
    normal
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A stream's blocked terms, normalised once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockedTerms {
    terms: Vec<Vec<String>>,
}

impl BlockedTerms {
    pub fn new(terms: &[String]) -> Self {
        BlockedTerms {
            terms: terms
                .iter()
                .map(|t| words(t))
                .filter(|w| !w.is_empty())
                .collect(),
        }
    }

    /// Whether `text` contains one of the terms as whole words.
    pub fn found_in(&self, text: &str) -> bool {
        if self.terms.is_empty() {
            return false;
        }
        let text = words(text);
        self.terms
            .iter()
            .any(|term| text.windows(term.len()).any(|w| w == term.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_match_as_whole_words_in_any_case_and_compatibility_form() {
        let blocked = BlockedTerms::new(&["spoiler".into(), "Free Tickets".into()]);
        for refused in [
            "no SPOILER please",
            "Spoiler!",
            "ｓｐｏｉｌｅｒ", // full-width letters
            "get free   tickets here",
            "FREE-TICKETS",
        ] {
            assert!(blocked.found_in(refused), "{refused}");
        }
        for allowed in [
            "spoilers ahead",
            "a spoil er",
            "free ticket",
            "tickets free",
        ] {
            assert!(!blocked.found_in(allowed), "{allowed}");
        }
        assert!(!BlockedTerms::new(&[" ".into()]).found_in("anything at all"));
    }
}
