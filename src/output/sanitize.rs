//! Terminal-injection safety for job output.
//!
//! The invariant: in `Colors` mode, what leaves the sanitiser contains ESC
//! only as the start of a complete SGR sequence (`ESC [ digits ; : m`), and
//! no other C0 control than tab (and newline, in chunk mode), no DEL and no
//! C1 control. In `Strip` mode it contains no ESC at all. Titles (OSC 0/2),
//! clipboard writes (OSC 52), hyperlinks, cursor moves, DCS/SOS/PM/APC
//! strings, charset switches and the 8-bit C1 forms of all of these are
//! removed, whole. `Raw` passes text through.
//!
//! The sanitiser is a small state machine over characters, so it works the
//! same on whole lines and on chunks split at arbitrary points; its memory is
//! bounded by the longest SGR sequence it keeps (64 bytes).

use crate::policy::Sanitize;

/// Longest SGR parameter string kept; longer ones are dropped whole.
const MAX_SGR_PARAMS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Escape,
    /// After ESC and intermediate bytes (0x20–0x2F), waiting for the final byte.
    EscapeIntermediate,
    /// Inside a CSI sequence.
    Csi,
    /// Inside an OSC string: ends at BEL or ST.
    Osc,
    /// Inside a DCS, SOS, PM or APC string: ends at ST (BEL accepted too).
    Str,
}

/// A streaming sanitiser. Feed it text in any pieces; state carries over.
#[derive(Debug, Clone)]
pub struct Sanitizer {
    mode: Sanitize,
    /// Whether `\n` passes (chunk mode) or is dropped (line mode, where the
    /// splitter has already removed line ends).
    keep_newlines: bool,
    state: State,
    params: [u8; MAX_SGR_PARAMS],
    params_len: usize,
    /// The CSI cannot be a kept SGR (intermediate bytes, private markers, overflow).
    csi_spoiled: bool,
}

impl Sanitizer {
    /// A sanitiser in `mode`; `keep_newlines` for chunk mode, where line
    /// breaks are content.
    pub fn new(mode: Sanitize, keep_newlines: bool) -> Self {
        Self {
            mode,
            keep_newlines,
            state: State::Ground,
            params: [0; MAX_SGR_PARAMS],
            params_len: 0,
            csi_spoiled: false,
        }
    }

    /// True when no escape sequence is in progress.
    pub fn is_idle(&self) -> bool {
        self.state == State::Ground
    }

    /// Forgets any sequence in progress (used between lines).
    pub fn reset(&mut self) {
        self.state = State::Ground;
        self.params_len = 0;
        self.csi_spoiled = false;
    }

    /// Sanitises `input`, appending to `out`.
    pub fn push(&mut self, input: &str, out: &mut String) {
        if self.mode == Sanitize::Raw {
            out.push_str(input);
            return;
        }
        if self.state == State::Ground && is_plain(input, self.keep_newlines) {
            out.push_str(input);
            return;
        }
        out.reserve(input.len());
        for c in input.chars() {
            self.step(c, out);
        }
    }

    /// Sanitises one complete line (state is reset before and after).
    pub fn line(&mut self, input: &str) -> String {
        if self.mode == Sanitize::Raw || is_plain(input, false) {
            return input.to_string();
        }
        self.reset();
        let mut out = String::with_capacity(input.len());
        for c in input.chars() {
            self.step(c, &mut out);
        }
        self.reset();
        out
    }

    fn step(&mut self, c: char, out: &mut String) {
        match self.state {
            State::Ground => self.ground(c, out),
            State::Escape => match c {
                '[' => {
                    self.state = State::Csi;
                    self.params_len = 0;
                    self.csi_spoiled = false;
                }
                ']' => self.state = State::Osc,
                'P' | 'X' | '^' | '_' => self.state = State::Str,
                '\u{20}'..='\u{2f}' => self.state = State::EscapeIntermediate,
                '\u{30}'..='\u{7e}' => self.state = State::Ground,
                _ => {
                    // ESC followed by a control or non-ASCII: drop the ESC and
                    // treat the character as ordinary input (another ESC
                    // starts a sequence of its own there).
                    self.state = State::Ground;
                    self.ground(c, out);
                }
            },
            State::EscapeIntermediate => match c {
                '\u{20}'..='\u{2f}' => {}
                '\u{30}'..='\u{7e}' => self.state = State::Ground,
                _ => {
                    self.state = State::Ground;
                    self.ground(c, out);
                }
            },
            State::Csi => match c {
                '\u{30}'..='\u{3f}' => {
                    // Parameter bytes; only digits, `;` and `:` can make an SGR we keep.
                    if !(c.is_ascii_digit() || c == ';' || c == ':') {
                        self.csi_spoiled = true;
                    }
                    if self.params_len < MAX_SGR_PARAMS {
                        self.params[self.params_len] = c as u8;
                        self.params_len += 1;
                    } else {
                        self.csi_spoiled = true;
                    }
                }
                '\u{20}'..='\u{2f}' => self.csi_spoiled = true,
                '\u{40}'..='\u{7e}' => {
                    if c == 'm' && !self.csi_spoiled && self.mode == Sanitize::Colors {
                        out.push_str("\u{1b}[");
                        // Parameters are ASCII by construction.
                        for &b in &self.params[..self.params_len] {
                            out.push(b as char);
                        }
                        out.push('m');
                    }
                    self.state = State::Ground;
                }
                _ => {
                    // A control or non-ASCII character inside CSI: abandon
                    // the sequence and handle the character normally.
                    self.state = State::Ground;
                    self.ground(c, out);
                }
            },
            // An ESC inside a string ends it and starts an escape of its
            // own: ST (`ESC \`) is that escape with `\` as its final byte,
            // and any other one is handled as it would be outside.
            State::Osc | State::Str => match c {
                '\u{07}' | '\u{9c}' => self.state = State::Ground,
                '\u{1b}' => self.state = State::Escape,
                _ => {}
            },
        }
    }

    fn ground(&mut self, c: char, out: &mut String) {
        match c {
            '\u{1b}' => self.state = State::Escape,
            '\t' => out.push('\t'),
            '\n' if self.keep_newlines => out.push('\n'),
            '\u{9b}' => {
                // The 8-bit CSI is removed whole, SGR or not.
                self.state = State::Csi;
                self.params_len = 0;
                self.csi_spoiled = true;
            }
            '\u{9d}' => self.state = State::Osc,
            '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => self.state = State::Str,
            c if (c as u32) < 0x20 || c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) => {}
            c => out.push(c),
        }
    }
}

/// True when every byte is printable ASCII (0x20–0x7E), tab, or — when
/// `newlines` — a line feed: such bytes are valid UTF-8 and need no
/// sanitising in any mode. Written so the compiler vectorises it: no early
/// exit inside a block.
pub fn is_printable_ascii(bytes: &[u8], newlines: bool) -> bool {
    let ok = |b: u8| (0x20..0x7f).contains(&b) || b == b'\t' || (newlines && b == b'\n');
    bytes
        .chunks(64)
        .all(|block| block.iter().fold(true, |acc, &b| acc & ok(b)))
}

/// True when `text` needs no sanitising: no C0 controls but tab (and
/// newline when kept), no DEL, and no C1 control (whose UTF-8 form starts
/// with 0xC2 followed by 0x80–0x9F).
pub(crate) fn is_plain(text: &str, keep_newlines: bool) -> bool {
    let bytes = text.as_bytes();
    // Most output is printable ASCII: the vectorised check first.
    if is_printable_ascii(bytes, keep_newlines) {
        return true;
    }
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\t' => true,
        b'\n' => keep_newlines,
        0x00..=0x1f | 0x7f => false,
        0xc2 => !bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)),
        _ => true,
    })
}

/// Decodes bytes arriving in arbitrary chunks as UTF-8, lossily, carrying an
/// incomplete character over to the next chunk (at most 3 bytes).
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// True when no partial character is waiting for the next chunk.
    pub fn is_empty(&self) -> bool {
        self.carry.is_empty()
    }

    /// Appends the decodable part of `carry + bytes` to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        let joined;
        let input: &[u8] = if self.carry.is_empty() {
            bytes
        } else {
            self.carry.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.carry);
            &joined
        };
        let mut rest = input;
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    return;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    out.push_str(std::str::from_utf8(&rest[..valid]).expect("checked"));
                    match err.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &rest[valid + bad..];
                        }
                        None => {
                            // Incomplete at the end: keep it for the next chunk.
                            self.carry.extend_from_slice(&rest[valid..]);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Flushes an incomplete character left at the end of the stream.
    pub fn finish(&mut self, out: &mut String) {
        if !self.carry.is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
            self.carry.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colors(text: &str) -> String {
        Sanitizer::new(Sanitize::Colors, false).line(text)
    }

    fn strip(text: &str) -> String {
        Sanitizer::new(Sanitize::Strip, false).line(text)
    }

    #[test]
    fn keeps_plain_text_and_colours() {
        assert_eq!(colors("hello\tworld"), "hello\tworld");
        assert_eq!(
            colors("\u{1b}[1;31merror\u{1b}[0m: x"),
            "\u{1b}[1;31merror\u{1b}[0m: x"
        );
        assert_eq!(
            colors("\u{1b}[38:2:255:0:0mrgb\u{1b}[m"),
            "\u{1b}[38:2:255:0:0mrgb\u{1b}[m"
        );
        assert_eq!(strip("\u{1b}[1;31merror\u{1b}[0m: x"), "error: x");
    }

    #[test]
    fn removes_everything_else() {
        let cases = [
            ("\u{1b}]0;pwned\u{7}title", "title"),
            ("\u{1b}]52;c;ZXZpbA==\u{1b}\\clip", "clip"),
            ("\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\", "link"),
            ("\u{1b}[2J\u{1b}[Hcleared", "cleared"),
            ("\u{1b}[?1049hswitch", "switch"),
            ("\u{1b}[>5;1m private sgr", " private sgr"),
            ("\u{1b}Pq#0;2;0;0;0\u{1b}\\sixel", "sixel"),
            ("\u{1b}(Bcharset", "charset"),
            ("\u{1b}7save\u{1b}8", "save"),
            ("bare\u{1b}", "bare"),
            ("bell\u{7}back\u{8}cr\rnul\0del\u{7f}", "bellbackcrnuldel"),
            ("c1\u{9b}31mcsi", "c1csi"),
            ("c1\u{9d}0;t\u{9c}osc", "c1osc"),
            ("c1\u{85}nel", "c1nel"),
            ("\u{1b}[31;\u{1b}[32mnested", "\u{1b}[32mnested"),
            ("\u{1b}[3\nnl", "nl"),
            ("ünïcödé ✓", "ünïcödé ✓"),
        ];
        for (input, want) in cases {
            assert_eq!(colors(input), want, "{input:?}");
        }
    }

    /// Every state and every way out of it, in both modes: (input, what
    /// `Colors` keeps, what `Strip` keeps).
    #[test]
    fn every_state_and_its_exits() {
        let sgr = "\u{1b}[1m";
        let cases: &[(&str, &str, &str)] = &[
            // ESC, then an intermediate byte, then a final byte: removed.
            ("a\u{1b}(0b", "ab", "ab"),
            ("a\u{1b} !/0b", "ab", "ab"),
            // ESC and intermediates, then a control or non-ASCII: the
            // sequence is dropped and the character is ordinary input.
            ("a\u{1b}(\u{7}b", "ab", "ab"),
            ("a\u{1b}(éb", "aéb", "aéb"),
            // ESC ESC: the second starts the sequence anew.
            ("a\u{1b}\u{1b}[1mb", "a\u{1b}[1mb", "ab"),
            // ESC then a control or non-ASCII character.
            ("a\u{1b}\tb", "a\tb", "a\tb"),
            ("a\u{1b}éb", "aéb", "aéb"),
            // CSI with an intermediate byte is no SGR.
            ("a\u{1b}[1 mb", "ab", "ab"),
            // CSI broken by a control or non-ASCII character.
            ("a\u{1b}[1\tb", "a\tb", "a\tb"),
            ("a\u{1b}[1éb", "aéb", "aéb"),
            // Other final bytes end a CSI without output.
            ("a\u{1b}[1Kb", "ab", "ab"),
            ("a\u{1b}[1;2Hb\u{1b}[@c", "abc", "abc"),
            // A private or odd parameter spoils an SGR.
            ("a\u{1b}[?1mb\u{1b}[1<mc\u{1b}[=mdz", "abcdz", "abcdz"),
            // OSC ends at BEL, ST (ESC \\) or the 8-bit ST; ESC ESC inside
            // keeps waiting; another escape ends it and starts anew.
            ("a\u{1b}]0;t\u{7}b", "ab", "ab"),
            ("a\u{1b}]0;t\u{9c}b", "ab", "ab"),
            ("a\u{1b}]0;t\u{1b}\u{1b}\\b", "ab", "ab"),
            ("a\u{1b}]0;t\u{1b}[1mb", "a\u{1b}[1mb", "ab"),
            // DCS, SOS, PM and APC strings, 7- and 8-bit, end at BEL or ST.
            (
                "a\u{1b}Px\u{7}b\u{1b}Xx\u{9c}c\u{1b}^x\u{1b}\\d\u{1b}_x\u{7}e",
                "abcde",
                "abcde",
            ),
            (
                "a\u{90}x\u{9c}b\u{98}x\u{7}c\u{9e}x\u{9c}d\u{9f}x\u{9c}e",
                "abcde",
                "abcde",
            ),
            ("a\u{1b}Px\u{1b}\u{1b}\\b", "ab", "ab"),
            // The 8-bit CSI and OSC.
            ("a\u{9b}1mb\u{9d}0;t\u{7}c", "abc", "abc"),
            // C0 controls but tab, DEL and C1 controls go; a newline too,
            // in line mode.
            (
                "a\u{0}\u{1f}\u{7f}\u{80}\u{85}\u{9a}\nb\u{a0}",
                "ab\u{a0}",
                "ab\u{a0}",
            ),
            (sgr, sgr, ""),
        ];
        for (input, colors_want, strip_want) in cases {
            assert_eq!(&colors(input), colors_want, "colors {input:?}");
            assert_eq!(&strip(input), strip_want, "strip {input:?}");
        }
    }

    #[test]
    fn sgr_parameters_up_to_the_limit_are_kept() {
        let at_limit = format!("\u{1b}[{}m", "1".repeat(MAX_SGR_PARAMS));
        assert_eq!(colors(&format!("{at_limit}x")), format!("{at_limit}x"));
        let over = format!("\u{1b}[{}m", "1".repeat(MAX_SGR_PARAMS + 1));
        assert_eq!(colors(&format!("{over}x")), "x");
    }

    #[test]
    fn chunks_keep_newlines_and_state() {
        let mut s = Sanitizer::new(Sanitize::Colors, true);
        assert!(s.is_idle());
        let mut out = String::new();
        s.push("a\n\u{1b}]0;", &mut out);
        assert!(!s.is_idle());
        // Plain text while a sequence is open is still part of it.
        s.push("title", &mut out);
        s.push("\u{7}b\u{1}\n", &mut out);
        assert!(s.is_idle());
        assert_eq!(out, "a\nb\n");
        s.push("\u{1b}[3", &mut out);
        s.reset();
        assert!(s.is_idle());
        s.push("1mc", &mut out);
        assert_eq!(out, "a\nb\n1mc");
        // Raw passes even controls, in chunks too.
        let mut raw = Sanitizer::new(Sanitize::Raw, true);
        let mut out = String::new();
        raw.push("\u{1b}]0;t\u{7}\u{0}", &mut out);
        assert_eq!(out, "\u{1b}]0;t\u{7}\u{0}");
        // Line mode drops newlines a chunk would keep.
        assert_eq!(colors("a\nb"), "ab");
    }

    #[test]
    fn which_text_needs_no_sanitising() {
        for (bytes, newlines, want) in [
            (&b""[..], false, true),
            (b" ~\t", false, true),
            (b"\x1f", false, false),
            (b"\x7f", false, false),
            (b"a\nb", false, false),
            (b"a\nb", true, true),
            (b"\r", true, false),
            (b"\xc3\xa9", false, false),
        ] {
            assert_eq!(
                is_printable_ascii(bytes, newlines),
                want,
                "{bytes:?} {newlines}"
            );
        }
        // A bad byte anywhere in a long run is found.
        let mut long = vec![b'a'; 200];
        long[130] = 0x1b;
        assert!(!is_printable_ascii(&long, true));
        long[130] = b'b';
        assert!(is_printable_ascii(&long, true));
        for (text, newlines, want) in [
            ("", false, true),
            ("é ✓\t", false, true),
            ("a\nb", false, false),
            ("a\nb", true, true),
            ("\u{1f}", true, false),
            ("\u{7f}", true, false),
            ("\u{80}", true, false),
            ("\u{9f}", true, false),
            ("\u{a0}", true, true),
            ("\u{bf}", true, true),
        ] {
            assert_eq!(is_plain(text, newlines), want, "{text:?} {newlines}");
        }
    }

    #[test]
    fn overlong_sgr_is_dropped() {
        let long = format!("\u{1b}[{}m", "1;".repeat(40));
        assert_eq!(colors(&format!("{long}x")), "x");
    }

    #[test]
    fn streaming_across_chunk_boundaries() {
        let input = "a\u{1b}[3";
        let rest = "1mred\u{1b}]0;t\u{7}b\nc";
        let mut s = Sanitizer::new(Sanitize::Colors, true);
        let mut out = String::new();
        s.push(input, &mut out);
        s.push(rest, &mut out);
        assert_eq!(out, "a\u{1b}[31mredb\nc");
    }

    #[test]
    fn raw_is_untouched() {
        let input = "\u{1b}]0;t\u{7}\u{1b}[2J";
        assert_eq!(Sanitizer::new(Sanitize::Raw, false).line(input), input);
    }

    #[test]
    fn utf8_stream_carries_split_characters() {
        let bytes = "é✓".as_bytes();
        let mut s = Utf8Stream::default();
        let mut out = String::new();
        assert!(s.is_empty());
        // `is_empty` says whether a character is waiting: only then does
        // chunk mode have to decode the next chunk instead of passing it.
        for (piece, waiting) in [
            (&bytes[..1], true),
            (&bytes[1..3], true),
            (&bytes[3..], false),
        ] {
            s.push(piece, &mut out);
            assert_eq!(s.is_empty(), !waiting, "after {piece:?}");
        }
        s.finish(&mut out);
        assert_eq!(out, "é✓");
        let mut out = String::new();
        s.push(b"a\xffb\xe2", &mut out);
        s.finish(&mut out);
        assert_eq!(out, "a\u{fffd}b\u{fffd}");
    }
}
