//! Reading the EDI segment addresses of key rules and route conditions,
//! written the way the segment itself is written on the wire:
//!
//! - X12: `L11*{value}*BM`: segment `L11` whose element 2 is `BM`; the key
//!   is element 1. Elements are separated by `*`, components by `>`.
//! - EDIFACT: `RFF+CN:{value}`: segment `RFF` whose element 1 has `CN` as
//!   its first component; the key is its second component. Elements are
//!   separated by `+`, components by `:`.
//!
//! An empty position matches anything (`N9**{value}`), a literal must equal
//! the (trimmed) value on the wire, and `{value}` marks where the key is.
//! A key rule has exactly one `{value}`; a condition (`x12_segment: AT7*D1`)
//! has none. These are config separators: the document's own delimiters
//! are read from its envelope (ISA, UNA) at run time.

use super::{EdiAddress, EdiPart, EdiSyntax};

/// Most elements an address may constrain: X12 and EDIFACT segments stay
/// far below this.
const MAX_ELEMENTS: usize = 99;

impl EdiSyntax {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            EdiSyntax::X12 => "X12",
            EdiSyntax::Edifact => "EDIFACT",
        }
    }

    /// Element and component separators of addresses in the routes file.
    fn separators(self) -> (char, char) {
        match self {
            EdiSyntax::X12 => ('*', '>'),
            EdiSyntax::Edifact => ('+', ':'),
        }
    }

    fn example(self, with_value: bool) -> &'static str {
        match (self, with_value) {
            (EdiSyntax::X12, true) => {
                "`L11*{value}*BM` (segment L11, key in element 1, element 2 is BM)"
            }
            (EdiSyntax::X12, false) => "`AT7*D1` (segment AT7 whose element 1 is D1)",
            (EdiSyntax::Edifact, true) => "`RFF+CN:{value}` (segment RFF, element 1 is CN:key)",
            (EdiSyntax::Edifact, false) => {
                "`STS+1+21` (segment STS whose elements 1 and 2 are 1 and 21)"
            }
        }
    }

    /// Is `tag` a segment tag of this syntax?
    fn is_tag(self, tag: &str) -> bool {
        let upper = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
        match self {
            EdiSyntax::X12 => {
                (2..=3).contains(&tag.len())
                    && tag.starts_with(|c: char| c.is_ascii_uppercase())
                    && tag.chars().all(upper)
            }
            EdiSyntax::Edifact => tag.len() == 3 && tag.chars().all(|c| c.is_ascii_uppercase()),
        }
    }
}

impl EdiAddress {
    /// Parses `text`; `key` says whether it is a key rule (exactly one
    /// `{value}`) or a condition (none).
    pub fn parse(text: &str, syntax: EdiSyntax, key: bool) -> Result<EdiAddress, String> {
        let fail = |why: String| {
            format!(
                "invalid {} address `{text}`: {why}; expected e.g. {}",
                syntax.name(),
                syntax.example(key)
            )
        };
        let (element_sep, component_sep) = syntax.separators();
        let mut pieces = text.split(element_sep);
        let tag = pieces.next().unwrap_or_default();
        if !syntax.is_tag(tag) {
            let shape = match syntax {
                EdiSyntax::X12 => "2 or 3 upper-case letters or digits",
                EdiSyntax::Edifact => "3 upper-case letters",
            };
            return Err(fail(format!("`{tag}` is not a segment tag ({shape})")));
        }
        let mut elements = Vec::new();
        let mut values = 0;
        for element in pieces {
            let mut parts = Vec::new();
            for component in element.split(component_sep) {
                let part = match component.trim() {
                    "" => EdiPart::Any,
                    "{value}" => {
                        values += 1;
                        EdiPart::Value
                    }
                    other if other.contains(['{', '}']) => {
                        return Err(fail(format!(
                            "`{other}`: only `{{value}}` may be written in braces, as a whole component"
                        )))
                    }
                    other => EdiPart::Literal(other.to_owned()),
                };
                parts.push(part);
            }
            elements.push(parts);
        }
        if elements.len() > MAX_ELEMENTS {
            return Err(fail(format!(
                "it has {} elements; at most {MAX_ELEMENTS} are supported",
                elements.len()
            )));
        }
        match (key, values) {
            (true, 0) => Err(fail(
                "no `{value}`; mark the element (or component) that holds the key".to_owned(),
            )),
            (true, 1) | (false, 0) => Ok(EdiAddress {
                text: text.to_owned(),
                syntax,
                tag: tag.to_owned(),
                elements,
            }),
            (true, _) => Err(fail(format!(
                "`{{value}}` appears {values} times; a key rule reads one place"
            ))),
            (false, _) => Err(fail(
                "a condition has no `{value}`; write the values the segment must carry".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_x12_address_reads_qualifiers_and_the_value_position() {
        let address = EdiAddress::parse("L11*{value}*BM", EdiSyntax::X12, true).expect("valid");
        assert_eq!(address.tag, "L11");
        assert_eq!(
            address.elements,
            vec![vec![EdiPart::Value], vec![EdiPart::Literal("BM".into())]]
        );
        let skipped = EdiAddress::parse("N9**{value}", EdiSyntax::X12, true).expect("valid");
        assert_eq!(skipped.elements[0], vec![EdiPart::Any]);
    }

    #[test]
    fn an_edifact_address_reads_components() {
        let address = EdiAddress::parse("RFF+CN:{value}", EdiSyntax::Edifact, true).expect("valid");
        assert_eq!(address.tag, "RFF");
        assert_eq!(
            address.elements,
            vec![vec![EdiPart::Literal("CN".into()), EdiPart::Value]]
        );
    }

    #[test]
    fn a_condition_has_no_value_and_a_key_exactly_one() {
        assert!(EdiAddress::parse("AT7*D1", EdiSyntax::X12, false).is_ok());
        for (text, syntax, key, why) in [
            ("AT7*D1", EdiSyntax::X12, true, "no `{value}`"),
            (
                "N9*{value}*{value}",
                EdiSyntax::X12,
                true,
                "appears 2 times",
            ),
            (
                "AT7*{value}",
                EdiSyntax::X12,
                false,
                "a condition has no `{value}`",
            ),
            (
                "l11*{value}",
                EdiSyntax::X12,
                true,
                "`l11` is not a segment tag",
            ),
            (
                "RF+{value}",
                EdiSyntax::Edifact,
                true,
                "`RF` is not a segment tag (3 upper-case letters)",
            ),
            (
                "RFF+CN{value}",
                EdiSyntax::Edifact,
                true,
                "only `{value}` may be written in braces",
            ),
        ] {
            let message = EdiAddress::parse(text, syntax, key).expect_err(text);
            assert!(message.contains(why), "{text}: {message}");
        }
    }
}
