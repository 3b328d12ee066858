//! Splitting a byte stream into lines of bounded length.
//!
//! The invariant: joining the pieces with the separators they report gives
//! back exactly the input. A piece ends with `\n` (the separator, removed),
//! `\r\n` (removed too), a lone `\r` (removed: progress bars redraw a line
//! with it, and each redraw becomes its own piece), the length limit
//! (nothing removed: the next piece continues the same line), or the end of
//! the stream. Memory is bounded by the limit: a partial line never holds
//! more than `max` bytes.

/// How a piece ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// `\n`, removed.
    Newline,
    /// `\r\n`, removed.
    CrLf,
    /// A lone `\r`, removed.
    Cr,
    /// The line reached the length limit; the next piece continues it.
    Split,
    /// The stream ended without a line terminator.
    Eof,
}

impl LineEnd {
    /// The bytes that were removed.
    pub fn separator(self) -> &'static [u8] {
        match self {
            LineEnd::Newline => b"\n",
            LineEnd::CrLf => b"\r\n",
            LineEnd::Cr => b"\r",
            LineEnd::Split | LineEnd::Eof => b"",
        }
    }
}

/// A line splitter with a length limit.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max: usize,
    /// The previous chunk ended with `\r`: a line end, `\r\n` or lone.
    pending_cr: bool,
}

impl LineSplitter {
    /// `max` is the longest piece, in bytes (at least 4, so a piece can
    /// always hold one UTF-8 character).
    pub fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            max: max.max(4),
            pending_cr: false,
        }
    }

    /// Feeds bytes; calls `emit` for every complete piece.
    pub fn push(&mut self, mut input: &[u8], mut emit: impl FnMut(&[u8], LineEnd)) {
        // Nothing read says nothing about the byte after a held `\r`: the
        // line it ends stays held (emitting it here would cost room the
        // reader did not budget for, and split a later `\r\n` in two).
        if input.is_empty() {
            return;
        }
        if std::mem::take(&mut self.pending_cr) {
            let end = if input.first() == Some(&b'\n') {
                input = &input[1..];
                LineEnd::CrLf
            } else {
                LineEnd::Cr
            };
            emit(&self.partial, end);
            self.partial.clear();
        }
        while !input.is_empty() {
            let room = self.max - self.partial.len();
            let window = &input[..input.len().min(room + 1)];
            // A line end within the window ends a piece of at most `max`
            // bytes (`i <= room`, as the window is at most `room + 1` long).
            match memchr::memchr2(b'\n', b'\r', window) {
                Some(i) => {
                    let (end, consumed) = match (input[i], input.get(i + 1)) {
                        (b'\n', _) => (LineEnd::Newline, 1),
                        (_, Some(b'\n')) => (LineEnd::CrLf, 2),
                        (_, Some(_)) => (LineEnd::Cr, 1),
                        (_, None) => {
                            // A `\r` at the end of the chunk: decide with the next one.
                            self.partial.extend_from_slice(&input[..i]);
                            self.pending_cr = true;
                            return;
                        }
                    };
                    if self.partial.is_empty() {
                        emit(&input[..i], end);
                    } else {
                        self.partial.extend_from_slice(&input[..i]);
                        emit(&self.partial, end);
                        self.partial.clear();
                    }
                    input = &input[i + consumed..];
                }
                _ if input.len() <= room => {
                    // No line end yet and still room: keep for later.
                    self.partial.extend_from_slice(input);
                    return;
                }
                _ => {
                    // The line is too long: emit `max` bytes, cut at a
                    // character boundary where possible.
                    self.partial.extend_from_slice(&input[..room]);
                    let cut = utf8_cut(&self.partial);
                    emit(&self.partial[..cut], LineEnd::Split);
                    self.partial.drain(..cut);
                    input = &input[room..];
                }
            }
        }
    }

    /// Bytes of an unfinished line held for the next push.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Ends the stream, emitting what is left.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], LineEnd)) {
        if std::mem::take(&mut self.pending_cr) {
            emit(&self.partial, LineEnd::Cr);
        } else if !self.partial.is_empty() {
            emit(&self.partial, LineEnd::Eof);
        }
        self.partial.clear();
    }
}

/// Where to cut `bytes` so the first part does not end inside a UTF-8
/// character: before an incomplete last character, if there is one.
fn utf8_cut(bytes: &[u8]) -> usize {
    let len = bytes.len();
    let last_start = (len.saturating_sub(4)..len)
        .rev()
        .find(|&j| bytes[j] & 0xC0 != 0x80);
    match last_start {
        Some(j) if j > 0 && j + utf8_width(bytes[j]) > len => j,
        _ => len,
    }
}

fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        // ASCII, and bytes no character starts with, stand alone.
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(Vec<u8>, LineEnd)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            s.push(chunk, |l, e| out.push((l.to_vec(), e)));
        }
        s.finish(|l, e| out.push((l.to_vec(), e)));
        out
    }

    fn joined(pieces: &[(Vec<u8>, LineEnd)]) -> Vec<u8> {
        pieces
            .iter()
            .flat_map(|(l, e)| l.iter().chain(e.separator()).copied())
            .collect()
    }

    #[test]
    fn an_empty_read_keeps_a_held_carriage_return() {
        // `\r`, nothing, `\n`: one line ended by `\r\n`, not a `\r` line
        // and then an empty `\n` one.
        assert_eq!(
            split(&[b"a\r", b"", b"\nb\n"], 80),
            vec![
                (b"a".to_vec(), LineEnd::CrLf),
                (b"b".to_vec(), LineEnd::Newline)
            ]
        );
    }

    #[test]
    fn splits_on_newlines_across_chunks() {
        let out = split(&[b"ab\ncd", b"e\r", b"\n\nf\rg\r"], 100);
        let lines: Vec<&[u8]> = out.iter().map(|(l, _)| l.as_slice()).collect();
        assert_eq!(lines, [&b"ab"[..], b"cde", b"", b"f", b"g"]);
        assert_eq!(out[1].1, LineEnd::CrLf);
        assert_eq!(out[3].1, LineEnd::Cr);
        assert_eq!(out[4].1, LineEnd::Cr);
    }

    #[test]
    fn long_lines_are_cut_at_the_limit() {
        let input = b"0123456789abcdef\nxy";
        let out = split(&[input], 8);
        let lines: Vec<&[u8]> = out.iter().map(|(l, _)| l.as_slice()).collect();
        assert_eq!(lines, [&b"01234567"[..], b"89abcdef", b"xy"]);
        assert_eq!(joined(&out), input);
    }

    #[test]
    fn cuts_do_not_split_characters() {
        let input = "aé✓é✓é✓".as_bytes();
        let out = split(&[input], 4);
        for (piece, _) in &out {
            assert!(std::str::from_utf8(piece).is_ok(), "{piece:?}");
            assert!(piece.len() <= 4);
        }
        assert_eq!(joined(&out), input);
    }

    fn pieces(chunks: &[&[u8]], max: usize) -> Vec<(String, LineEnd)> {
        split(chunks, max)
            .into_iter()
            .map(|(l, e)| (String::from_utf8_lossy(&l).into_owned(), e))
            .collect()
    }

    fn piece(text: &str, end: LineEnd) -> (String, LineEnd) {
        (text.to_string(), end)
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_one_piece() {
        use LineEnd::*;
        // The terminator right after `max` bytes ends the line: no split.
        assert_eq!(
            pieces(&[b"abcd\nef"], 4),
            [piece("abcd", Newline), piece("ef", Eof)]
        );
        assert_eq!(
            pieces(&[b"abcd\r\nef"], 4),
            [piece("abcd", CrLf), piece("ef", Eof)]
        );
        assert_eq!(
            pieces(&[b"abcd\ref"], 4),
            [piece("abcd", Cr), piece("ef", Eof)]
        );
        // Split over chunks: the first fills the line exactly.
        assert_eq!(
            pieces(&[b"abcd", b"\nef"], 4),
            [piece("abcd", Newline), piece("ef", Eof)]
        );
        assert_eq!(pieces(&[b"ab", b"cd", b"\n"], 4), [piece("abcd", Newline)]);
        // One byte more is split, and the rest continues the line.
        assert_eq!(
            pieces(&[b"abcde\n"], 4),
            [piece("abcd", Split), piece("e", Newline)]
        );
        assert_eq!(
            pieces(&[b"abc", b"de\n"], 4),
            [piece("abcd", Split), piece("e", Newline)]
        );
    }

    #[test]
    fn carriage_returns_across_chunks() {
        use LineEnd::*;
        assert_eq!(
            pieces(&[b"a\r", b"\nb"], 100),
            [piece("a", CrLf), piece("b", Eof)]
        );
        assert_eq!(
            pieces(&[b"a\r", b"b"], 100),
            [piece("a", Cr), piece("b", Eof)]
        );
        assert_eq!(pieces(&[b"a\r"], 100), [piece("a", Cr)]);
        assert_eq!(pieces(&[b"a\r", b""], 100), [piece("a", Cr)]);
        assert_eq!(
            pieces(&[b"x", b"a\r", b"\r\n"], 100),
            [piece("xa", Cr), piece("", CrLf)]
        );
        assert_eq!(pieces(&[b""], 100), []);
        assert_eq!(pieces(&[b"\n"], 100), [piece("", Newline)]);
    }

    #[test]
    fn cuts_fall_before_an_incomplete_character() {
        use LineEnd::*;
        // "é" is 2 bytes, "✓" 3, "😀" 4; each cut keeps whole characters.
        assert_eq!(
            pieces(&["aaaé".as_bytes()], 4),
            [piece("aaa", Split), piece("é", Eof)]
        );
        assert_eq!(pieces(&["aaé".as_bytes()], 4), [piece("aaé", Eof)]);
        assert_eq!(
            pieces(&["aa✓".as_bytes()], 4),
            [piece("aa", Split), piece("✓", Eof)]
        );
        assert_eq!(pieces(&["a✓".as_bytes()], 4), [piece("a✓", Eof)]);
        assert_eq!(
            pieces(&["a😀".as_bytes()], 4),
            [piece("a", Split), piece("😀", Eof)]
        );
        assert_eq!(
            pieces(&["😀😀".as_bytes()], 4),
            [piece("😀", Split), piece("😀", Eof)]
        );
        // Invalid bytes are cut anywhere: nothing to keep whole.
        assert_eq!(utf8_cut(b"\xff\xff\xff\xff"), 4);
        assert_eq!(utf8_cut(b"\x80\x80\x80\x80"), 4);
        assert_eq!(utf8_cut(b"\xe2\x9c"), 2);
        assert_eq!(utf8_cut(b"a\xe2\x9c"), 1);
        assert_eq!(utf8_cut(b""), 0);
    }

    #[test]
    fn character_widths_from_their_lead_byte() {
        for (lead, width) in [
            (0x00, 1),
            (0x7f, 1),
            (0x80, 1),
            (0xbf, 1),
            (0xc0, 2),
            (0xdf, 2),
            (0xe0, 3),
            (0xef, 3),
            (0xf0, 4),
            (0xf7, 4),
            (0xf8, 1),
            (0xff, 1),
        ] {
            assert_eq!(utf8_width(lead), width, "{lead:#x}");
        }
    }

    #[test]
    fn the_limit_is_at_least_four_bytes() {
        assert_eq!(
            pieces(&[b"abcdef"], 1),
            [piece("abcd", LineEnd::Split), piece("ef", LineEnd::Eof)]
        );
    }

    #[test]
    fn joins_back_to_the_input() {
        let input: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for max in [4, 5, 17, 100, 4096] {
            for chunk in [1, 3, 64, 5000] {
                let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
                let out = split(&chunks, max);
                assert_eq!(joined(&out), input, "max {max} chunk {chunk}");
                assert!(out.iter().all(|(l, _)| l.len() <= max));
            }
        }
    }
}
