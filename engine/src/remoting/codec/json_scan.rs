//! The fast path for JSON headers: one pass over the bytes for the shape every RocketMQ client
//! writes, straight into a [`RemotingCommand`].
//!
//! Every request and response carries a JSON header, so its decoding is on the hot path of
//! both the broker and the client. Real headers are a flat object: integer `code`, `opaque`,
//! `flag` and `version`, a `language` name, an optional `remark`, and `extFields`, an object
//! of string values. This scanner reads exactly that shape and declines (`None`) anything
//! else: numbers where strings are expected, nested values, duplicate fields, surrogate
//! escapes, trailing bytes. A declined header goes to the general decoder, which is the one
//! definition of the lenient rules and of the errors; the scanner only ever agrees with it
//! (checked by a differential property test), it never decides what is an error.

use compact_str::CompactString;

use super::super::code::LanguageCode;
use super::super::command::{ExtFields, RemotingCommand};
use super::json_text::find_escaped;

/// Decodes `json` if it has the common shape; `None` leaves it to the general decoder.
pub(super) fn scan_header(json: &[u8]) -> Option<RemotingCommand> {
    // Checked as UTF-8 once: every string below is a slice of it between ASCII delimiters.
    let text = std::str::from_utf8(json).ok()?;
    let mut scanner = Scanner { json, text, pos: 0 };
    // Absent fields read as the general decoder reads them: zero, and the default language.
    let mut command = RemotingCommand {
        version: 0,
        language: LanguageCode::default(),
        ..RemotingCommand::default()
    };
    let mut seen = Seen::default();
    scanner.expect(b'{')?;
    if !scanner.consume(b'}') {
        loop {
            let key = scanner.plain_string()?;
            scanner.expect(b':')?;
            match key {
                b"code" => command.code = scanner.int_field(&mut seen.code)?,
                b"opaque" => command.opaque = scanner.int_field(&mut seen.opaque)?,
                b"flag" => command.flag = scanner.int_field(&mut seen.flag)?,
                b"version" => command.version = scanner.int_field(&mut seen.version)?,
                b"language" => {
                    once(&mut seen.language)?;
                    let name = std::str::from_utf8(scanner.plain_string()?).ok()?;
                    command.language = LanguageCode::from_name(name);
                }
                b"remark" => {
                    once(&mut seen.remark)?;
                    command.remark = scanner.text_or_null()?.map(CompactString::into_string);
                }
                b"extFields" => {
                    once(&mut seen.ext_fields)?;
                    command.ext_fields = scanner.ext_fields()?;
                }
                _ => scanner.skip_scalar()?,
            }
            if scanner.consume(b'}') {
                break;
            }
            scanner.expect(b',')?;
        }
    }
    scanner.skip_whitespace();
    (scanner.pos == json.len()).then_some(command)
}

/// The fields already read: the general decoder refuses a duplicate, so the scanner declines.
#[derive(Default)]
struct Seen {
    code: bool,
    opaque: bool,
    flag: bool,
    version: bool,
    language: bool,
    remark: bool,
    ext_fields: bool,
}

/// Marks a field as read, declining the header if it was read before.
fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

struct Scanner<'a> {
    json: &'a [u8],
    /// `json` as text.
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.json.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then takes `byte` if it comes next.
    fn consume(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        if self.json.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.consume(byte).then_some(())
    }

    /// A string without escapes or control characters, as its raw bytes (field and language
    /// names).
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let rest = &self.json[self.pos..];
        let len = find_escaped(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.pos += len + 1;
        Some(&rest[..len])
    }

    /// A string value with its escapes resolved, or `null` (`None` inside).
    fn text_or_null(&mut self) -> Option<Option<CompactString>> {
        self.skip_whitespace();
        if self.json[self.pos..].starts_with(b"null") {
            self.pos += 4;
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A string with its escapes resolved.
    ///
    /// Most strings have no escape: one search finds the closing quote and the run is copied
    /// once, inline at every call. An escaped string (property lists escape their separators,
    /// `\u0001` and `\u0002`) goes to [`escaped_string`](Self::escaped_string), out of line.
    #[inline]
    fn string(&mut self) -> Option<CompactString> {
        self.expect(b'"')?;
        let run = find_escaped(&self.json[self.pos..])?;
        if self.json[self.pos + run] != b'"' {
            return self.escaped_string(run);
        }
        let text = self.text.get(self.pos..self.pos + run)?;
        self.pos += run + 1;
        Some(CompactString::from(text))
    }

    /// The rest of a string whose first `run` bytes are plain and followed by an escape or a
    /// control character, assembled run by run. The header was checked as UTF-8 as a whole,
    /// and runs start and end at ASCII delimiters, so no run is checked again. A control
    /// character (JSON requires them escaped) declines.
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, mut run: usize) -> Option<CompactString> {
        let mut text = String::with_capacity((self.json.len() - self.pos).min(2 * run + 64));
        loop {
            text.push_str(self.text.get(self.pos..self.pos + run)?);
            let delimiter = self.json[self.pos + run];
            self.pos += run + 1;
            match delimiter {
                b'"' => return Some(CompactString::from(text)),
                b'\\' => text.push(self.escape()?),
                _ => return None,
            }
            run = find_escaped(&self.json[self.pos..])?;
        }
    }

    /// The character of the escape after a backslash. Surrogates decline.
    fn escape(&mut self) -> Option<char> {
        let byte = *self.json.get(self.pos)?;
        self.pos += 1;
        Some(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = self.json.get(self.pos..self.pos + 4)?;
                let code = hex.iter().try_fold(0, |code, &digit| {
                    Some(code << 4 | char::from(digit).to_digit(16)?)
                })?;
                self.pos += 4;
                char::from_u32(code)?
            }
            _ => return None,
        })
    }

    /// An integer field in `i32` range, read once.
    fn int_field(&mut self, seen: &mut bool) -> Option<i32> {
        once(seen)?;
        self.skip_whitespace();
        let start = self.pos;
        if self.json.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let digits_start = self.pos;
        while self.json.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = &self.json[digits_start..self.pos];
        // JSON has no leading zeros; anything past the digits (a fraction, an exponent) is
        // the general decoder's to judge.
        let canonical = !digits.is_empty() && (digits.len() == 1 || digits[0] != b'0');
        if !canonical || matches!(self.json.get(self.pos), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.text.get(start..self.pos)?.parse().ok()
    }

    /// `extFields`: an object of string or null values (a null value is absent), or `null`.
    fn ext_fields(&mut self) -> Option<ExtFields> {
        self.skip_whitespace();
        if self.json[self.pos..].starts_with(b"null") {
            self.pos += 4;
            return Some(ExtFields::new());
        }
        self.expect(b'{')?;
        let mut fields = ExtFields::with_capacity(16);
        if self.consume(b'}') {
            return Some(fields);
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            if let Some(value) = self.text_or_null()? {
                // A repeated key: the general decoder keeps the last value, as this does.
                fields.insert(key, value);
            }
            if self.consume(b'}') {
                return Some(fields);
            }
            self.expect(b',')?;
        }
    }

    /// The value of a field the header does not use: a string, `true`, `false` or `null`.
    fn skip_scalar(&mut self) -> Option<()> {
        self.skip_whitespace();
        let rest = &self.json[self.pos..];
        for literal in [&b"true"[..], b"false", b"null"] {
            if rest.starts_with(literal) {
                self.pos += literal.len();
                return Some(());
            }
        }
        self.text_or_null().map(drop)
    }
}
