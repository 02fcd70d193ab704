//! Key source and route condition: UN/EDIFACT interchanges (IFTSTA status
//! reports, DESADV despatch advice, INVOIC invoices …).
//!
//! An optional `UNA` service string advice gives the delimiters in six
//! bytes: component separator, element separator, decimal mark, release
//! character, a reserved byte (the repetition separator from syntax
//! version 4; a space means none) and segment terminator. Without UNA the
//! defaults `:` `+` `.` `?` ` ` `'` apply. The release character escapes
//! the next byte (`?+` is a literal `+`) and is removed from values.
//!
//! The envelope must hold together: after UNA comes UNB; UNH opens a
//! message (its type, data element 0065 in UNH's second element, is
//! recorded) and UNT closes it; a complete body ends with UNZ. Otherwise
//! it is [`Problem::EdiBadEnvelope`]. A partial body is read up to its last
//! complete segment.

use super::edi::{self, Delimiters, Document};
use super::Problem;

/// The delimiters when there is no UNA.
const DEFAULTS: Delimiters = Delimiters {
    element: b'+',
    component: b':',
    repetition: None,
    release: Some(b'?'),
    terminator: b'\'',
};

/// Reads an EDIFACT interchange from `body`.
pub(super) fn parse(body: &[u8], partial: bool) -> Result<Document, Problem> {
    let mut start = skip_blank(body, 0).ok_or(Problem::EdiBadEnvelope)?;
    let mut delimiters = DEFAULTS;
    if body.get(start..).is_some_and(|b| b.starts_with(b"UNA")) {
        let advice = body
            .get(start + 3..start + 9)
            .and_then(|advice| <[u8; 6]>::try_from(advice).ok())
            .ok_or(Problem::EdiBadEnvelope)?;
        let [component, element, _decimal, release, repetition, terminator] = advice;
        let optional = |b: u8| (b != b' ').then_some(b);
        delimiters = Delimiters {
            component,
            element,
            release: optional(release),
            repetition: optional(repetition),
            terminator,
        };
        start = skip_blank(body, start + 9).ok_or(Problem::EdiBadEnvelope)?;
    }
    if !delimiters.usable() || !body.get(start..).is_some_and(|b| b.starts_with(b"UNB")) {
        return Err(Problem::EdiBadEnvelope);
    }
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

/// The first position at or after `from` that is not white space.
fn skip_blank(body: &[u8], from: usize) -> Option<usize> {
    body.get(from..)?
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| from + i)
}

/// Checks UNB/UNZ and UNH/UNT, recording each message's type.
fn check_envelope(body: &[u8], document: &mut Document, partial: bool) -> Result<(), Problem> {
    let d = document.delimiters;
    let mut open_message = false;
    let mut ended = false;
    let segments = document
        .segments
        .iter()
        .filter_map(|range| body.get(range.clone()));
    for segment in segments {
        let tag = edi::tag(segment, &d);
        if tag.len() != 3 || !tag.iter().all(u8::is_ascii_uppercase) {
            document.malformed = true;
            continue;
        }
        match tag {
            b"UNH" if open_message => return Err(Problem::EdiBadEnvelope),
            b"UNH" => {
                open_message = true;
                let identifier = edi::split(segment, d.element, d.release)
                    .nth(2)
                    .unwrap_or_default();
                let kind = edi::split(identifier, d.component, d.release)
                    .next()
                    .unwrap_or_default();
                document
                    .kinds
                    .push(edi::text(&edi::unescape(kind, d.release)));
            }
            b"UNT" if !open_message => return Err(Problem::EdiBadEnvelope),
            b"UNT" => open_message = false,
            b"UNZ" => ended = true,
            _ => {}
        }
    }
    if !partial && (open_message || !ended) {
        return Err(Problem::EdiBadEnvelope);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EdiAddress, EdiSyntax};

    fn address(text: &str) -> EdiAddress {
        EdiAddress::parse(text, EdiSyntax::Edifact, true).expect("valid address")
    }

    #[test]
    fn default_delimiters_apply_without_una() {
        let body = b"UNB+UNOC:3+SENDER+RECEIVER+240105:1200+1'UNH+1+IFTSTA:D:01B:UN'RFF+CN:CN-1'UNT+3+1'UNZ+1+1'";
        let document = parse(body, false).expect("reads");
        assert_eq!(document.delimiters, DEFAULTS);
        assert_eq!(document.kinds, ["IFTSTA"]);
        assert_eq!(document.values(body, &address("RFF+CN:{value}")), ["CN-1"]);
    }

    #[test]
    fn una_delimiters_and_the_release_character_are_honoured() {
        let body = b"UNA=*,#|!\nUNB*UNOC=3*S*R*240105=1200*1!\nUNH*1*DESADV=D=96A=UN!\nRFF*CN=A#*B#=C#!!\nUNT*3*1!\nUNZ*1*1!\n";
        let document = parse(body, false).expect("reads");
        assert_eq!(document.delimiters.component, b'=');
        assert_eq!(document.delimiters.release, Some(b'#'));
        assert_eq!(document.delimiters.repetition, Some(b'|'));
        assert_eq!(document.kinds, ["DESADV"]);
        let address = EdiAddress::parse("RFF+CN:{value}", EdiSyntax::Edifact, true).expect("valid");
        assert_eq!(document.values(body, &address), ["A*B=C!"]);
    }

    #[test]
    fn broken_envelopes_are_refused() {
        for body in [
            &b""[..],
            b"UNA:+",
            b"UNH+1+IFTSTA:D:01B:UN'UNT+2+1'",
            b"UNA::.? 'UNB+x'UNZ+1'",
            b"UNB+x'UNH+1+A'UNH+2+B'UNT+1+2'UNZ+1'",
            b"UNB+x'UNT+1+2'UNZ+1'",
            b"UNB+x'UNH+1+IFTSTA'",
        ] {
            assert_eq!(
                parse(body, false).err(),
                Some(Problem::EdiBadEnvelope),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
