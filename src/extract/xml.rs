//! Key source: XML paths over a body (SOAP envelopes, SAP OData and IDoc
//! XML, WMS messages), read by one streaming pass with `quick-xml`.
//!
//! The walk keeps, per open element, which paths are still alive (as the
//! JSON scanner does), and collects the text of elements that end a path:
//! the trimmed concatenation of their own text and CDATA (not their
//! children's). A path ending in `@attr` reads that attribute of each
//! matching element. Names are compared by local name, so namespace
//! prefixes never matter. Every path of one body is answered by the same
//! walk.
//!
//! Hostile documents cost little: a DTD is skipped, never fetched, and its
//! entities are never expanded; a value that refers to one (the "billion
//! laughs") is not read and gives [`Problem::XmlEntity`] (the five
//! predefined entities and character references are read). Elements nested
//! deeper than [`MAX_XML_DEPTH`] stop the walk with [`Problem::XmlTooDeep`];
//! anything not well-formed (mismatched or unclosed tags, bad attributes)
//! is [`Problem::MalformedXml`]. A partial body (a truncated tap) is read
//! up to where it was cut, keeping what it gave.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::config::{XmlPath, XmlStep, MAX_XML_DEPTH};

use super::Problem;

/// Walks `text` once and calls `on_value(path_index, value)` for every
/// element text or attribute at one of `paths`, in document order; a value
/// that could not be read (it uses a DTD entity) is reported as its
/// problem. A fatal problem ends the walk with `Err`, and callers should
/// then discard what was reported.
pub(super) fn scan(
    text: &str,
    paths: &[&XmlPath],
    partial: bool,
    mut on_value: impl FnMut(usize, Result<&str, Problem>),
) -> Result<(), Problem> {
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut walk = Walk {
        paths,
        live: Vec::new(),
        collecting: Vec::new(),
    };
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            // A prefix ends wherever the tap cut it.
            Err(_) if partial => return Ok(()),
            Err(_) => return Err(Problem::MalformedXml),
        };
        match event {
            Event::Start(start) => walk.open(&start, &mut on_value)?,
            Event::Empty(start) => {
                walk.open(&start, &mut on_value)?;
                walk.close(&mut on_value);
            }
            Event::End(_) => walk.close(&mut on_value),
            // Text outside the document element: not XML (a JSON or EDI
            // body sent to an XML rule).
            Event::Text(text) if walk.live.is_empty() => {
                if !text.iter().all(u8::is_ascii_whitespace) {
                    return Err(Problem::MalformedXml);
                }
            }
            Event::CData(_) if walk.live.is_empty() => return Err(Problem::MalformedXml),
            Event::Text(text) => {
                if walk.collecting_here() {
                    match text.unescape() {
                        Ok(text) => walk.append(&text),
                        Err(error) => walk.spoil(problem_of(&error)),
                    }
                }
            }
            Event::CData(cdata) => {
                if walk.collecting_here() {
                    match std::str::from_utf8(&cdata) {
                        Ok(text) => walk.append(text),
                        Err(_) => walk.spoil(Problem::InvalidUtf8),
                    }
                }
            }
            Event::Eof if walk.live.is_empty() || partial => return Ok(()),
            Event::Eof => return Err(Problem::MalformedXml),
            // Declarations, comments, processing instructions and the DTD
            // carry no keys; the DTD is neither fetched nor interpreted.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// An unknown entity is a DTD's; anything else is malformed.
fn problem_of(error: &quick_xml::Error) -> Problem {
    match error {
        quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(..)) => {
            Problem::XmlEntity
        }
        _ => Problem::MalformedXml,
    }
}

/// The state of one walk.
struct Walk<'p> {
    paths: &'p [&'p XmlPath],
    /// Per open element, the paths whose steps matched down to it.
    live: Vec<Vec<usize>>,
    /// Elements whose text is being collected: path, depth, text so far
    /// (or why a part of it could not be read).
    collecting: Vec<(usize, usize, Result<String, Problem>)>,
}

impl Walk<'_> {
    fn open(
        &mut self,
        start: &BytesStart<'_>,
        on_value: &mut impl FnMut(usize, Result<&str, Problem>),
    ) -> Result<(), Problem> {
        let depth = self.live.len();
        if depth >= MAX_XML_DEPTH {
            return Err(Problem::XmlTooDeep);
        }
        let name = start.local_name();
        let parent: Box<dyn Iterator<Item = usize>> = match self.live.last() {
            Some(parent) => Box::new(parent.iter().copied()),
            None if depth == 0 => Box::new(0..self.paths.len()),
            None => Box::new(std::iter::empty()),
        };
        let paths = self.paths;
        let alive: Vec<usize> = parent
            .filter(|&p| {
                paths
                    .get(p)
                    .and_then(|path| path.steps.get(depth))
                    .is_some_and(|step| match step {
                        XmlStep::Any => true,
                        XmlStep::Name(wanted) => wanted.as_bytes() == name.as_ref(),
                    })
            })
            .collect();
        for &p in &alive {
            let Some(path) = paths.get(p).filter(|path| path.steps.len() == depth + 1) else {
                continue;
            };
            match &path.attribute {
                None => self.collecting.push((p, depth + 1, Ok(String::new()))),
                Some(attribute) => read_attribute(start, attribute, p, on_value)?,
            }
        }
        self.live.push(alive);
        Ok(())
    }

    fn close(&mut self, on_value: &mut impl FnMut(usize, Result<&str, Problem>)) {
        let depth = self.live.len();
        self.live.pop();
        while let Some((path, at, text)) = self.collecting.pop() {
            if at != depth {
                self.collecting.push((path, at, text));
                break;
            }
            match text {
                Ok(text) => on_value(path, Ok(text.trim())),
                Err(problem) => on_value(path, Err(problem)),
            }
        }
    }

    /// True when the element being read is collected by some path.
    fn collecting_here(&self) -> bool {
        let depth = self.live.len();
        self.collecting.iter().any(|(_, at, _)| *at == depth)
    }

    fn append(&mut self, text: &str) {
        let depth = self.live.len();
        for (_, at, collected) in &mut self.collecting {
            if let (true, Ok(collected)) = (*at == depth, collected.as_mut()) {
                collected.push_str(text);
            }
        }
    }

    /// The element being read has an unreadable part: it gives no value.
    fn spoil(&mut self, problem: Problem) {
        let depth = self.live.len();
        for (_, at, collected) in &mut self.collecting {
            if *at == depth {
                *collected = Err(problem);
            }
        }
    }
}

/// Reports attribute `wanted` (by local name) of `start` for path `path`.
fn read_attribute(
    start: &BytesStart<'_>,
    wanted: &str,
    path: usize,
    on_value: &mut impl FnMut(usize, Result<&str, Problem>),
) -> Result<(), Problem> {
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|_| Problem::MalformedXml)?;
        if attribute.key.as_namespace_binding().is_some()
            || attribute.key.local_name().as_ref() != wanted.as_bytes()
        {
            continue;
        }
        let value: Result<Cow<'_, str>, _> = attribute.unescape_value();
        match value {
            Ok(value) => on_value(path, Ok(value.trim())),
            Err(error) => on_value(path, Err(problem_of(&error))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a walk found: `(path index, value)` pairs, or its fatal problem.
    type Found = Result<Vec<(usize, String)>, Problem>;

    fn values(text: &str, paths: &[&str]) -> (Found, Vec<Problem>) {
        let parsed: Vec<XmlPath> = paths
            .iter()
            .map(|p| XmlPath::parse(p).expect("valid path"))
            .collect();
        let refs: Vec<&XmlPath> = parsed.iter().collect();
        let mut problems = Vec::new();
        let mut found = Vec::new();
        let result = scan(text, &refs, false, |p, v| match v {
            Ok(v) => found.push((p, v.to_owned())),
            Err(problem) => problems.push(problem),
        });
        (result.map(|()| found), problems)
    }

    #[test]
    fn element_text_and_attributes_are_read_by_local_name() {
        let text = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
  <n0:Delivery xmlns:n0="urn:sap" id="D-1"><n0:Number> 80001234 </n0:Number>
  <Item pos="10"/><Item pos="20"></Item></n0:Delivery>
</s:Body></s:Envelope>"#;
        let (found, problems) = values(
            text,
            &[
                "/Envelope/Body/Delivery/Number",
                "/Envelope/*/Delivery/Item/@pos",
                "/Envelope/Body/Delivery/@id",
            ],
        );
        assert_eq!(
            found.expect("reads"),
            [
                (2, "D-1".to_owned()),
                (0, "80001234".to_owned()),
                (1, "10".to_owned()),
                (1, "20".to_owned())
            ]
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn text_is_own_text_and_cdata_with_predefined_entities_only() {
        let (found, _) = values(
            "<a><b>x&amp;<![CDATA[<y>]]>&#65;<c>not mine</c></b></a>",
            &["/a/b"],
        );
        assert_eq!(found.expect("reads"), [(0, "x&<y>A".to_owned())]);
    }

    #[test]
    fn dtd_entities_are_never_expanded() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY ext SYSTEM "http://attacker.example/evil.dtd">
]>
<lolz><id>&lol3;</id><ext a="&ext;">&ext;</ext><ok>1</ok></lolz>"#;
        let (found, problems) = values(
            laughs,
            &["/lolz/id", "/lolz/ext", "/lolz/ext/@a", "/lolz/ok"],
        );
        assert_eq!(found.expect("the rest is read"), [(3, "1".to_owned())]);
        assert_eq!(problems, [Problem::XmlEntity; 3]);
    }

    #[test]
    fn deep_nesting_stops_at_the_bound() {
        let deep = "<a>".repeat(10_000) + &"</a>".repeat(10_000);
        assert_eq!(values(&deep, &["/a"]).0.err(), Some(Problem::XmlTooDeep));
    }

    #[test]
    fn malformed_documents_are_refused() {
        for text in [
            "<a><b></a>",
            "<a>",
            "<a x='1' x='2'/>",
            "<a><</a>",
            "<a></b>",
            "{\"a\": 1}",
            "ISA*00*~",
        ] {
            assert_eq!(
                values(text, &["/a/@x"]).0.err(),
                Some(Problem::MalformedXml),
                "{text}"
            );
        }
    }

    #[test]
    fn a_truncated_prefix_keeps_what_it_gave() {
        let paths = [XmlPath::parse("/a/id").expect("valid")];
        let refs: Vec<&XmlPath> = paths.iter().collect();
        let mut found = Vec::new();
        let result = scan("<a><id>D-1</id><lines><li", &refs, true, |_, v| {
            found.push(v.map(str::to_owned))
        });
        assert_eq!(result, Ok(()));
        assert_eq!(found, [Ok("D-1".to_owned())]);
    }
}
