//! Key source: a regex over the raw (content-decoded) body bytes.
//!
//! Every match gives a value: the capture group named `value` when the
//! regex has one, else group 1 when it has groups, else the whole match.
//! Regexes run on truncated bodies too (a prefix still holds the keys near
//! its start). A captured value that is not UTF-8 is [`Problem::InvalidUtf8`].

use regex::bytes::Regex;

use super::Problem;

/// Calls `on_value` for every value `regex` captures in `body`, in order.
pub(super) fn values(
    regex: &Regex,
    body: &[u8],
    problems: &mut Vec<Problem>,
    mut on_value: impl FnMut(&str),
) {
    let named = regex.capture_names().any(|name| name == Some("value"));
    let group = usize::from(regex.captures_len() > 1);
    for captures in regex.captures_iter(body) {
        let found = if named {
            captures.name("value")
        } else {
            captures.get(group)
        };
        let Some(found) = found else {
            // An optional group that did not take part in this match.
            continue;
        };
        match std::str::from_utf8(found.as_bytes()) {
            Ok(value) => on_value(value),
            Err(_) => problems.push(Problem::InvalidUtf8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(pattern: &str, body: &[u8]) -> (Vec<String>, Vec<Problem>) {
        let regex = Regex::new(pattern).expect("valid regex");
        let mut found = Vec::new();
        let mut problems = Vec::new();
        values(&regex, body, &mut problems, |v| found.push(v.to_owned()));
        (found, problems)
    }

    #[test]
    fn named_group_value_is_preferred_over_other_groups() {
        let (found, _) = all(r"(REF)-(?P<value>\d+)", b"REF-1 REF-22");
        assert_eq!(found, vec!["1", "22"]);
    }

    #[test]
    fn first_group_is_used_when_there_is_no_value_group() {
        let (found, _) = all(
            r"<Order>([^<]+)</Order>",
            b"<Order>SO-1</Order><Order>SO-2</Order>",
        );
        assert_eq!(found, vec!["SO-1", "SO-2"]);
    }

    #[test]
    fn whole_match_is_used_without_groups() {
        let (found, _) = all(r"1Z[0-9A-Z]{6}", b"tracking 1Z999AA1 and 1Z888BB2");
        assert_eq!(found, vec!["1Z999AA1", "1Z888BB2"]);
    }

    #[test]
    fn capture_that_is_not_utf8_is_reported_and_skipped() {
        let (found, problems) = all(r"(?-u)id=(\S+)", b"id=\xFF\xFE id=ok");
        assert_eq!(found, vec!["ok"]);
        assert_eq!(problems, vec![Problem::InvalidUtf8]);
    }

    #[test]
    fn group_that_did_not_participate_gives_nothing() {
        let (found, problems) = all(r"a(?P<value>x)?", b"a ax");
        assert_eq!(found, vec!["x"]);
        assert!(problems.is_empty());
    }
}
