//! The JSON header writer: a command's header written straight into its frame.
//!
//! A header is a flat object of known shape: the fixed fields in alphabetical order (as Java
//! writes them), `extFields` already sorted, nulls omitted. Writing it directly spares the
//! generic serializer's per-field and per-string calls on every request and answer. The bytes
//! are those of `serde`'s JSON for the same header (a differential test holds this against
//! `sonic-rs`): control characters, `"` and `\` escaped, `\b \t \n \f \r` in their short
//! forms and other control characters as lowercase `\u00XX`; everything else as is.

use crate::remoting::code::SerializeType;
use crate::remoting::command::RemotingCommand;

use super::json_text::find_escaped;

/// Appends `command`'s JSON header to `out`.
pub(super) fn write_header(command: &RemotingCommand, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"code\":");
    write_int(out, command.code);
    if !command.ext_fields.is_empty() {
        out.extend_from_slice(b",\"extFields\":{");
        for (index, (key, value)) in command.ext_fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_string(out, key);
            out.push(b':');
            write_string(out, value);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"flag\":");
    write_int(out, command.flag);
    out.extend_from_slice(b",\"language\":");
    write_string(out, command.language.name());
    out.extend_from_slice(b",\"opaque\":");
    write_int(out, command.opaque);
    if let Some(remark) = &command.remark {
        out.extend_from_slice(b",\"remark\":");
        write_string(out, remark);
    }
    out.extend_from_slice(b",\"serializeTypeCurrentRPC\":");
    write_string(out, SerializeType::Json.name());
    out.extend_from_slice(b",\"version\":");
    write_int(out, command.version);
    out.push(b'}');
}

fn write_int(out: &mut Vec<u8>, value: i32) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// What a byte becomes inside a JSON string: `0` itself, `u` a `\u00XX` escape, any other
/// value the letter of a two-byte escape (`\n`, `\"`, …).
const ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` as a quoted JSON string, copying the runs between escapes whole.
fn write_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.push(b'"');
    let mut run_start = 0;
    while let Some(offset) = find_escaped(&bytes[run_start..]) {
        let index = run_start + offset;
        let byte = bytes[index];
        out.extend_from_slice(&bytes[run_start..index]);
        match ESCAPES[usize::from(byte)] {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_DIGITS[usize::from(byte >> 4)],
                HEX_DIGITS[usize::from(byte & 0x0f)],
            ]),
            letter => out.extend_from_slice(&[b'\\', letter]),
        }
        run_start = index + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}
