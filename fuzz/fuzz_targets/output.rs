//! The output pipeline on arbitrary bytes: the line splitter, UTF-8
//! decoding, the sanitiser in each mode, progress parsing and the whole
//! per-job pipeline, fed in arbitrary chunks. Checks the invariants as it
//! goes: nothing lost by splitting, pieces within their bound, no escape
//! but SGR in colour mode, none in strip mode.
#![no_main]

use arbitrary::Arbitrary;
use jobwarden::contract::{JobEvent, JobSpawnRequest};
use jobwarden::decision::{DecisionContext, decide};
use jobwarden::output::lines::LineSplitter;
use jobwarden::output::progress::ProgressTracker;
use jobwarden::output::sanitize::{Sanitizer, Utf8Stream};
use jobwarden::output::{JobOutput, Stream};
use jobwarden::policy::{Policy, Sanitize};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    max_line: u8,
    chunks: Vec<Vec<u8>>,
    chunk_mode: bool,
    stderr: bool,
}

/// The plans of the two output modes, built once.
fn plan(chunk_mode: bool) -> &'static jobwarden::Plan {
    static PLANS: std::sync::OnceLock<[jobwarden::Plan; 2]> = std::sync::OnceLock::new();
    &PLANS.get_or_init(|| [build_plan(false), build_plan(true)])[chunk_mode as usize]
}

fn build_plan(chunk_mode: bool) -> jobwarden::Plan {
    let text = format!(
        "version = 1\n[output]\nmode = \"{}\"\nmax_line_bytes = 80\ntail_bytes = 128\n[progress]\npatterns = ['(?P<percent>\\d+)%', '^step (?P<current>\\d+)/(?P<total>\\d+)']\n[binaries.sh]\npath = \"/bin/sh\"\n[plugins.p]\nbinaries = [\"sh\"]\n",
        if chunk_mode { "chunks" } else { "lines" }
    );
    let policy = Policy::from_toml("out.toml", &text).unwrap().policy;
    let dir = std::env::temp_dir();
    let ctx = DecisionContext {
        repo: &dir,
        home: None,
        job_tmp: &dir,
        host_env: &[],
    };
    decide(
        &policy,
        "p",
        &JobSpawnRequest::new("sh", Vec::<String>::new()),
        &ctx,
    )
    .unwrap()
}

fn only_sgr(out: &str) -> bool {
    let bytes = out.as_bytes();
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|b| *b == 0x1b) {
        let start = i + off;
        let rest = &bytes[start + 1..];
        let params = rest
            .iter()
            .skip(1)
            .take_while(|b| b.is_ascii_digit() || **b == b';' || **b == b':')
            .count();
        if rest.first() != Some(&b'[') || rest.get(1 + params) != Some(&b'm') {
            return false;
        }
        i = start + 2 + params + 1;
    }
    true
}

fuzz_target!(|input: Input| {
    let all: Vec<u8> = input.chunks.concat();

    // Splitting loses nothing and keeps its bound.
    let max = (input.max_line as usize).max(1);
    let mut splitter = LineSplitter::new(max);
    let mut joined = Vec::new();
    let mut emit = |piece: &[u8], end: jobwarden::output::lines::LineEnd| {
        assert!(piece.len() <= max.max(4));
        joined.extend_from_slice(piece);
        joined.extend_from_slice(end.separator());
    };
    for chunk in &input.chunks {
        splitter.push(chunk, &mut emit);
    }
    splitter.finish(&mut emit);
    assert_eq!(joined, all);

    // Decoding and sanitising, streamed.
    for mode in [Sanitize::Colors, Sanitize::Strip] {
        let mut decoder = Utf8Stream::default();
        let mut sanitizer = Sanitizer::new(mode, true);
        let (mut text, mut out) = (String::new(), String::new());
        for chunk in &input.chunks {
            text.clear();
            decoder.push(chunk, &mut text);
            sanitizer.push(&text, &mut out);
        }
        text.clear();
        decoder.finish(&mut text);
        sanitizer.push(&text, &mut out);
        match mode {
            Sanitize::Strip => assert!(!out.contains('\x1b') && !out.contains('\u{9b}')),
            _ => assert!(only_sgr(&out) && !out.contains('\u{9b}')),
        }
    }

    // Progress parsing of arbitrary lines.
    let plan = plan(input.chunk_mode);
    let mut tracker = ProgressTracker::new(&plan.progress.patterns);
    for line in String::from_utf8_lossy(&all).lines() {
        let _ = tracker.observe(line);
    }
    let _ = tracker.take_update();

    // The whole per-job pipeline.
    let mut output = JobOutput::new(
        "fuzz".into(),
        &plan.output,
        ProgressTracker::new(&plan.progress.patterns),
    );
    let stream = if input.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    let mut events = Vec::new();
    for chunk in &input.chunks {
        output.feed(stream, chunk, &mut events);
    }
    output.finish(stream, &mut events);
    for event in &events {
        match event {
            JobEvent::JobLogLine { data, .. } => {
                assert!(
                    data.line.len() <= 80 * 4,
                    "a line of {} bytes",
                    data.line.len()
                );
                assert!(only_sgr(&data.line));
            }
            JobEvent::JobOutputChunk { data, .. } => {
                assert!(only_sgr(&String::from_utf8_lossy(&data.bytes)))
            }
            _ => {}
        }
    }
    if let Some(tail) = output.tail() {
        assert!(tail.len() <= 128 * 4, "a tail of {} bytes", tail.len());
    }
});
