//! Key source: fields of form bodies, as carrier portals and older WMS
//! post them.
//!
//! - `application/x-www-form-urlencoded`: `name=value&…`, form-decoded
//!   (`+` is a space, `%XX` a byte) like query parameters.
//! - `multipart/form-data`: parts between `--boundary` lines; a part's
//!   field name is the `name` of its `Content-Disposition`. Parts with a
//!   `filename` are files and are not read as fields.
//!
//! Every field of the wanted name is a key. A body of another media type,
//! a multipart type without boundary, or a multipart body without its
//! closing delimiter is [`Problem::MalformedForm`]. A partial body gives
//! the fields it holds whole (the last, possibly cut one is dropped).

use crate::proxy::Headers;
use memchr::memmem;

use super::body::{content_type_param, media_type};
use super::request::form_decode;
use super::Problem;

/// Most parts read from one multipart body.
const MAX_PARTS: usize = 1_000;

/// One field: its name and its value, or why the value cannot be read
/// (not UTF-8), so that a rule asking for it reports that instead of a
/// missing key.
pub(super) type Field = (String, Result<String, Problem>);

/// Every field of a form body, in order. A name that cannot be decoded
/// is reported on `problems` (no rule can ask for it).
pub(super) fn fields(
    body: &[u8],
    headers: &Headers,
    partial: bool,
    problems: &mut Vec<Problem>,
) -> Result<Vec<Field>, Problem> {
    match media_type(headers).as_deref() {
        Some("application/x-www-form-urlencoded") => Ok(urlencoded(body, partial, problems)),
        Some("multipart/form-data") => {
            let boundary = content_type_param(headers, "boundary")
                .filter(|b| !b.is_empty() && b.len() <= 70)
                .ok_or(Problem::MalformedForm)?;
            multipart(body, boundary, partial)
        }
        _ => Err(Problem::MalformedForm),
    }
}

fn urlencoded(body: &[u8], partial: bool, problems: &mut Vec<Problem>) -> Vec<Field> {
    let Ok(text) = std::str::from_utf8(body) else {
        // Form encoding is ASCII; raw non-ASCII bytes are not a form.
        problems.push(Problem::MalformedForm);
        return Vec::new();
    };
    let mut pairs: Vec<&str> = text.split('&').filter(|p| !p.is_empty()).collect();
    if partial {
        pairs.pop();
    }
    let mut fields = Vec::new();
    for pair in pairs {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match form_decode(name.trim()) {
            Ok(name) => fields.push((
                name.into_owned(),
                form_decode(value).map(|value| value.into_owned()),
            )),
            Err(problem) => problems.push(problem),
        }
    }
    fields
}

fn multipart(body: &[u8], boundary: &str, partial: bool) -> Result<Vec<Field>, Problem> {
    let delimiter = format!("--{boundary}");
    // The first delimiter may follow a preamble; later ones start a line,
    // so a file that contains `--boundary` mid-line does not end its part.
    let first = memmem::find(body, delimiter.as_bytes()).ok_or(Problem::MalformedForm)?;
    let line_delimiter = format!("\n{delimiter}");
    let finder = memmem::Finder::new(line_delimiter.as_bytes());
    let mut at = first + delimiter.len();
    let mut fields = Vec::new();
    for _ in 0..MAX_PARTS {
        let rest = body.get(at..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(fields);
        }
        let Some(rest) = rest
            .strip_prefix(b"\r\n")
            .or_else(|| rest.strip_prefix(b"\n"))
        else {
            return finish(partial, fields);
        };
        let part_start = body.len() - rest.len();
        let Some(next) = finder.find(rest) else {
            return finish(partial, fields);
        };
        let part = rest.get(..next).unwrap_or_default();
        let part = part.strip_suffix(b"\r").unwrap_or(part);
        fields.extend(read_part(part)?);
        at = part_start + next + line_delimiter.len();
    }
    Err(Problem::MalformedForm)
}

/// A body that ended before its closing delimiter: fine for a prefix.
fn finish(partial: bool, fields: Vec<Field>) -> Result<Vec<Field>, Problem> {
    if partial {
        Ok(fields)
    } else {
        Err(Problem::MalformedForm)
    }
}

/// One part: headers, a blank line, the value. `None` for a file part or
/// a part without a field name.
fn read_part(part: &[u8]) -> Result<Option<Field>, Problem> {
    let (head, value) = match memmem::find(part, b"\r\n\r\n") {
        Some(split) => (part.get(..split), part.get(split + 4..)),
        None => match memmem::find(part, b"\n\n") {
            Some(split) => (part.get(..split), part.get(split + 2..)),
            None => return Err(Problem::MalformedForm),
        },
    };
    let (head, value) = (head.unwrap_or_default(), value.unwrap_or_default());
    let head = std::str::from_utf8(head).map_err(|_| Problem::MalformedForm)?;
    let disposition = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    });
    let Some(disposition) = disposition else {
        return Err(Problem::MalformedForm);
    };
    let mut name = None;
    for param in disposition.split(';').skip(1) {
        let Some((key, val)) = param.split_once('=') else {
            continue;
        };
        let val = val.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "filename" | "filename*" => return Ok(None),
            "name" => name = Some(val.to_owned()),
            _ => {}
        }
    }
    let value = std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| Problem::InvalidUtf8);
    Ok(name.map(|name| (name, value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &'static str) -> Headers {
        let mut map = http::HeaderMap::new();
        map.insert("content-type", http::HeaderValue::from_static(content_type));
        map.into()
    }

    #[test]
    fn urlencoded_fields_are_form_decoded() {
        let mut problems = Vec::new();
        let fields = fields(
            b"tracking=1Z+999&order=SO%2D1&order=SO-2&bad=%FF",
            &headers("application/x-www-form-urlencoded; charset=utf-8"),
            false,
            &mut problems,
        )
        .expect("reads");
        assert_eq!(
            fields,
            [
                ("tracking".to_owned(), Ok("1Z 999".to_owned())),
                ("order".to_owned(), Ok("SO-1".to_owned())),
                ("order".to_owned(), Ok("SO-2".to_owned())),
                ("bad".to_owned(), Err(Problem::InvalidUtf8))
            ]
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn multipart_fields_are_read_and_files_skipped() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"shipment\"\r\n\r\nSH-7\r\n--XyZ\r\nContent-Disposition: form-data; name=\"label\"; filename=\"l.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF--XyZ-ish\r\n--XyZ\r\ncontent-disposition: form-data; name=order\r\n\r\nSO-1\r\n--XyZ--\r\n";
        let fields = fields(
            body,
            &headers("multipart/form-data; boundary=XyZ"),
            false,
            &mut Vec::new(),
        )
        .expect("reads");
        assert_eq!(
            fields,
            [
                ("shipment".to_owned(), Ok("SH-7".to_owned())),
                ("order".to_owned(), Ok("SO-1".to_owned()))
            ]
        );
    }

    #[test]
    fn bodies_that_are_not_forms_are_malformed() {
        let multipart = headers("multipart/form-data; boundary=B");
        for (body, h) in [
            (&b"{\"a\":1}"[..], headers("application/json")),
            (b"x", headers("multipart/form-data")),
            (b"no delimiter at all", multipart.clone()),
            (
                b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n",
                multipart.clone(),
            ),
            (b"--B\r\nno blank line\r\n--B--", multipart.clone()),
        ] {
            assert_eq!(
                fields(body, &h, false, &mut Vec::new()).err(),
                Some(Problem::MalformedForm),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
