//! Key source and route condition: ASC X12 interchanges (856 ship notice,
//! 214 shipment status, 210 freight invoice, 940/945 …).
//!
//! The delimiters are read from the ISA header, which has sixteen elements:
//! the element separator is the byte after `ISA`, ISA11 is the repetition
//! separator (from version 00402; a letter there, as in 00401's `U`, means
//! none), the byte after the sixteenth separator is ISA16, the component
//! separator, and the byte after it terminates the segment. ISA is counted
//! by separators rather than by its nominal 106 bytes, since senders pad
//! its fields inconsistently. Line breaks after terminators are ignored.
//!
//! The envelope must hold together: a body that does not start with ISA,
//! ends inside it, declares unusable delimiters, nests ST inside ST, closes
//! an SE that was never opened, or (when complete) lacks its IEA or leaves
//! a transaction set open is [`Problem::EdiBadEnvelope`]. A partial body
//! (a truncated tap) is read up to its last complete segment. Every
//! transaction set's id (ST01) is recorded, so an interchange with several
//! ST/SE sets gives the keys of all of them and matches `x12: "856"` when
//! any set is an 856.

use super::edi::{self, Delimiters, Document};
use super::Problem;

/// Reads an X12 interchange from `body`.
pub(super) fn parse(body: &[u8], partial: bool) -> Result<Document, Problem> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(Problem::EdiBadEnvelope)?;
    let isa = body.get(start..).unwrap_or_default();
    if !isa.starts_with(b"ISA") {
        return Err(Problem::EdiBadEnvelope);
    }
    let delimiters = delimiters(isa)?;
    let segments = edi::split_segments(body, start, &delimiters, partial)?;
    let mut document = Document {
        delimiters,
        segments,
        kinds: Vec::new(),
        malformed: false,
    };
    check_envelope(body, &mut document, partial)?;
    Ok(document)
}

/// The delimiters an ISA segment declares.
fn delimiters(isa: &[u8]) -> Result<Delimiters, Problem> {
    let element = *isa.get(3).ok_or(Problem::EdiBadEnvelope)?;
    // Positions of the sixteen element separators of ISA.
    let separators: Vec<usize> = isa
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == element)
        .map(|(i, _)| i)
        .take(16)
        .collect();
    let last = *separators.get(15).ok_or(Problem::EdiBadEnvelope)?;
    let component = *isa.get(last + 1).ok_or(Problem::EdiBadEnvelope)?;
    let terminator = *isa.get(last + 2).ok_or(Problem::EdiBadEnvelope)?;
    // ISA11 lies between the tenth and the eleventh separators.
    let repetition = match (separators.get(10), separators.get(11)) {
        (Some(&from), Some(&to)) if to == from + 2 => isa
            .get(from + 1)
            .copied()
            .filter(|b| !b.is_ascii_alphanumeric() && *b != b' '),
        _ => None,
    };
    let delimiters = Delimiters {
        element,
        component,
        repetition,
        release: None,
        terminator,
    };
    if delimiters.usable() {
        Ok(delimiters)
    } else {
        Err(Problem::EdiBadEnvelope)
    }
}

/// Checks ISA/IEA and ST/SE, recording each set's ST01.
fn check_envelope(body: &[u8], document: &mut Document, partial: bool) -> Result<(), Problem> {
    let d = document.delimiters;
    let mut open_set = false;
    let mut ended = false;
    let segments = document
        .segments
        .iter()
        .filter_map(|range| body.get(range.clone()));
    for segment in segments {
        let tag = edi::tag(segment, &d);
        let valid = (2..=3).contains(&tag.len())
            && tag.first().is_some_and(u8::is_ascii_uppercase)
            && tag
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !valid {
            document.malformed = true;
            continue;
        }
        match tag {
            b"ST" if open_set => return Err(Problem::EdiBadEnvelope),
            b"ST" => {
                open_set = true;
                let id = edi::split(segment, d.element, None)
                    .nth(1)
                    .unwrap_or_default();
                document.kinds.push(edi::text(&edi::unescape(id, None)));
            }
            b"SE" if !open_set => return Err(Problem::EdiBadEnvelope),
            b"SE" => open_set = false,
            b"IEA" => ended = true,
            _ => {}
        }
    }
    if !partial && (open_set || !ended) {
        return Err(Problem::EdiBadEnvelope);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EdiAddress, EdiSyntax};

    /// An ISA with the common delimiters `*`, `^` (repetition), `>` and `~`.
    const ISA: &str = "ISA*00*          *00*          *ZZ*SHIPPER        *ZZ*CARRIER        *240105*1200*^*00501*000000001*0*P*>~";

    fn address(text: &str) -> EdiAddress {
        EdiAddress::parse(text, EdiSyntax::X12, true).expect("valid address")
    }

    #[test]
    fn delimiters_come_from_the_isa_header() {
        let body = format!("{ISA}GS*SM*A*B*20240105*1200*1*X*005010~ST*214*0001~B10*PRO1*SH1*SCAC~SE*3*0001~GE*1*1~IEA*1*000000001~");
        let document = parse(body.as_bytes(), false).expect("reads");
        assert_eq!(
            document.delimiters,
            Delimiters {
                element: b'*',
                component: b'>',
                repetition: Some(b'^'),
                release: None,
                terminator: b'~'
            }
        );
        assert_eq!(document.kinds, ["214"]);
        assert_eq!(
            document.values(body.as_bytes(), &address("B10*{value}")),
            ["PRO1"]
        );
    }

    #[test]
    fn non_default_delimiters_and_line_breaks_are_read() {
        let isa = ISA.replace('*', "|").replace('~', "\n").replace('^', "U");
        let body = format!("{isa}ST|856|0001\nBSN|00|SHP-1|20240105\nSE|3|0001\nIEA|1|000000001\n");
        let document = parse(body.as_bytes(), false).expect("reads");
        assert_eq!(document.delimiters.element, b'|');
        assert_eq!(document.delimiters.terminator, b'\n');
        assert_eq!(document.delimiters.repetition, None, "00401-style `U`");
        assert_eq!(
            document.values(body.as_bytes(), &address("BSN**{value}")),
            ["SHP-1"]
        );
    }

    #[test]
    fn broken_envelopes_are_refused() {
        for body in [
            "",
            "GS*SM~",
            "ISA*00*   *00*",
            &format!("{ISA}ST*214*1~ST*214*2~SE*1*2~IEA*1*1~"),
            &format!("{ISA}SE*1*2~IEA*1*1~"),
            &format!("{ISA}ST*214*1~B10*X~"),
            &ISA.replace("*>~", "*~~"),
        ] {
            assert_eq!(
                parse(body.as_bytes(), false).err(),
                Some(Problem::EdiBadEnvelope),
                "{body}"
            );
        }
    }

    #[test]
    fn a_truncated_interchange_is_read_to_its_last_whole_segment() {
        let body = format!("{ISA}ST*214*1~B10*PRO1*SH1*SCAC~AT7*D1*NS~SE*4*1~IE");
        let document = parse(body.as_bytes(), true).expect("prefix reads");
        assert_eq!(
            document.values(body.as_bytes(), &address("B10*{value}")),
            ["PRO1"]
        );
        assert_eq!(
            parse(body.as_bytes(), false).err(),
            Some(Problem::EdiBadEnvelope)
        );
    }

    #[test]
    fn a_segment_without_a_tag_is_malformed_but_the_rest_is_read() {
        let body = format!("{ISA}ST*214*1~b@d*1~B10*PRO1~SE*3*1~IEA*1*1~");
        let document = parse(body.as_bytes(), false).expect("reads");
        assert!(document.malformed);
        assert_eq!(
            document.values(body.as_bytes(), &address("B10*{value}")),
            ["PRO1"]
        );
    }
}
