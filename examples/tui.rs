//! A terminal UI over jobwarden, as a ProGit user would meet it: a list of
//! jobs with status and progress, a scrollable log pane that renders the
//! (sanitised) colours, a menu of the jobs the policy allows, and keys to
//! start, cancel and quit. It redraws only when something happened: a key,
//! a resize, or a job's events (the plugin's readable descriptor, see
//! `PluginHandle::events_fd`); idle, it sleeps in `poll` and uses no CPU.
//!
//! ```sh
//! cargo run --example tui                      # embedded policy, this repo
//! cargo run --example tui -- --policy policy/rust-dev.toml --plugin rust
//! ```
//!
//! Keys: a digit starts a menu entry, ↑/↓ (or k/j) select a job, c cancels
//! it, PgUp/PgDn scroll its log, q quits (cancelling what still runs).

use jobwarden::contract::{JobEvent, JobStatus, STREAM_STDERR, STREAM_SYSTEM};
use jobwarden::{JobHost, JobSpawnRequest, PluginHandle, Policy, PolicyJobHost};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Direction, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use std::collections::VecDeque;
use std::time::Duration;

/// Lines kept per job in the log pane.
const LOG_LINES: usize = 5000;

struct MenuItem {
    key: char,
    label: &'static str,
    request: JobSpawnRequest,
}

struct JobView {
    id: String,
    label: String,
    status: JobStatus,
    step: Option<String>,
    log: VecDeque<Line<'static>>,
}

struct App {
    _host: PolicyJobHost,
    plugin: PluginHandle,
    policy_name: String,
    menu: Vec<MenuItem>,
    jobs: Vec<JobView>,
    list: ListState,
    scroll: u16,
    message: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut policy_path = None;
    let mut repo = std::path::PathBuf::from(".");
    let mut plugin = "cli".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--policy" => policy_path = args.next(),
            "--repo" => repo = args.next().unwrap_or_default().into(),
            "--plugin" => plugin = args.next().unwrap_or_default(),
            other => {
                return Err(
                    format!("unknown argument {other}; use --policy, --repo, --plugin").into(),
                );
            }
        }
    }
    let policy = match &policy_path {
        Some(path) => Policy::load(path)?.policy,
        None => Policy::embedded_default(),
    };
    let mut builder = PolicyJobHost::builder(policy.clone(), &repo);
    if let Some(path) = &policy_path {
        builder = builder.watch_policy(path);
    }
    let host = builder.build()?;
    let handle = host.plugin(&plugin);
    let allowed: Vec<String> = policy
        .plugin_rule(&plugin)
        .map(|p| p.binaries.iter().map(|b| b.value.clone()).collect())
        .unwrap_or_default();
    let mut app = App {
        plugin: handle,
        _host: host,
        policy_name: policy.origin.name.clone(),
        menu: menu(&allowed),
        jobs: Vec::new(),
        list: ListState::default(),
        scroll: 0,
        message: format!("plugin `{plugin}` may run: {}", allowed.join(", ")),
    };

    let mut terminal = ratatui::init();
    let result = app.run(&mut terminal);
    ratatui::restore();
    result
}

/// Preset requests for the binaries the plugin may run.
fn menu(allowed: &[String]) -> Vec<MenuItem> {
    let presets: [(&str, &str, &[&str]); 10] = [
        ("git status", "git", &["status"]),
        (
            "git log",
            "git",
            &["log", "--oneline", "--graph", "-n", "40"],
        ),
        ("cargo build", "cargo", &["build"]),
        ("cargo test", "cargo", &["test"]),
        ("make", "make", &[]),
        ("ls", "ls", &["-la", "--color=always"]),
        (
            "colours",
            "printf",
            &[
                "\\033[1;32mgreen\\033[0m \\033[31mred\\033[0m \\033]0;a title the sanitiser removes\\007\\033[2Jno screen clear\\n::progress:: 50 halfway\\n",
            ],
        ),
        ("sleep 30", "sleep", &["30"]),
        ("read /etc/shadow", "cat", &["/etc/shadow"]),
        ("grep TODO", "grep", &["-rn", "TODO", "."]),
    ];
    presets
        .iter()
        .filter(|(_, binary, _)| allowed.iter().any(|a| a == binary))
        .take(9)
        .enumerate()
        .map(|(i, (label, binary, args))| MenuItem {
            key: char::from_digit(i as u32 + 1, 10).expect("at most 9"),
            label,
            request: JobSpawnRequest::new(*binary, args.iter().copied()).with_label(*label),
        })
        .collect()
}

impl App {
    /// On Unix, waits for a key, a resize or a job's events.
    #[cfg(unix)]
    fn run(
        &mut self,
        terminal: &mut ratatui::DefaultTerminal,
    ) -> Result<(), Box<dyn std::error::Error>> {
        use mio::unix::SourceFd;
        use mio::{Events, Interest, Poll, Token};
        use std::os::fd::AsRawFd;
        const KEYS: Token = Token(0);
        const JOBS: Token = Token(1);
        const RESIZE: Token = Token(2);

        // Sleep until one of three things happens, with no fixed tick: a
        // key (the terminal crossterm reads), a job's events (the plugin's
        // readable descriptor), a resize (SIGWINCH through a socket pair).
        let mut poll = Poll::new()?;
        let tty = Tty::open()?;
        poll.registry()
            .register(&mut SourceFd(&tty.fd()), KEYS, Interest::READABLE)?;
        let jobs = self.plugin.events_fd()?.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&jobs), JOBS, Interest::READABLE)?;
        let (resized, on_resize) = std::os::unix::net::UnixStream::pair()?;
        resized.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGWINCH, on_resize)?;
        poll.registry().register(
            &mut SourceFd(&resized.as_raw_fd()),
            RESIZE,
            Interest::READABLE,
        )?;
        let mut ready = Events::with_capacity(8);
        loop {
            // Draining makes the jobs descriptor unreadable until the next
            // event, so the wait below sleeps until there is news.
            self.drain();
            terminal.draw(|frame| self.draw(frame))?;
            match poll.poll(&mut ready, None) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                result => result?,
            }
            if ready.iter().any(|e| e.token() == RESIZE) {
                let mut sink = [0u8; 64];
                while std::io::Read::read(&mut &resized, &mut sink).is_ok_and(|n| n > 0) {}
            }
            // Every key crossterm has, read or buffered: the poller is
            // edge-triggered, so nothing may be left for later.
            while event::poll(Duration::ZERO)? {
                if let Event::Key(key) = event::read()?
                    && key.kind == KeyEventKind::Press
                    && !self.key(key.code)
                {
                    return Ok(());
                }
            }
        }
    }

    /// Elsewhere (Windows has no readable descriptor for the events), a
    /// key or the next 100 ms tick, whichever comes first.
    #[cfg(not(unix))]
    fn run(
        &mut self,
        terminal: &mut ratatui::DefaultTerminal,
    ) -> Result<(), Box<dyn std::error::Error>> {
        loop {
            self.drain();
            terminal.draw(|frame| self.draw(frame))?;
            if event::poll(Duration::from_millis(100))?
                && let Event::Key(key) = event::read()?
                && key.kind == KeyEventKind::Press
                && !self.key(key.code)
            {
                return Ok(());
            }
        }
    }

    /// Acts on a key; false to quit.
    fn key(&mut self, code: KeyCode) -> bool {
        match code {
            KeyCode::Char('q') | KeyCode::Esc => return false,
            KeyCode::Char('c') => self.cancel_selected(),
            KeyCode::Up | KeyCode::Char('k') => self.select(-1),
            KeyCode::Down | KeyCode::Char('j') => self.select(1),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_add(10),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Char(c) if c.is_ascii_digit() => self.start(c),
            _ => {}
        }
        true
    }

    fn start(&mut self, key: char) {
        let Some(item) = self.menu.iter().find(|m| m.key == key) else {
            return;
        };
        let request = item.request.clone();
        let label = item.label.to_string();
        let id = self.plugin.spawn(request);
        self.message = format!("started {id}: {label}");
        self.jobs.push(JobView {
            id,
            label,
            status: JobStatus::Pending,
            step: None,
            log: VecDeque::new(),
        });
        self.list.select(Some(self.jobs.len() - 1));
        self.scroll = 0;
    }

    fn cancel_selected(&mut self) {
        if let Some(job) = self.list.selected().and_then(|i| self.jobs.get(i)) {
            self.message = if self.plugin.cancel(&job.id) {
                format!("cancelling {}", job.id)
            } else {
                format!("{} has already ended", job.id)
            };
        }
    }

    fn select(&mut self, delta: i32) {
        if self.jobs.is_empty() {
            return;
        }
        let current = self.list.selected().unwrap_or(0) as i32;
        let next = (current + delta).clamp(0, self.jobs.len() as i32 - 1);
        self.list.select(Some(next as usize));
        self.scroll = 0;
    }

    /// Takes every queued event without waiting.
    fn drain(&mut self) {
        for event in self.plugin.drain_events() {
            let Some(job) = self.jobs.iter_mut().find(|j| &j.id == event.job_id()) else {
                continue;
            };
            match &event {
                JobEvent::JobLogLine { data, .. } => {
                    let style = match data.stream.as_str() {
                        STREAM_SYSTEM => Style::default().fg(Color::DarkGray),
                        STREAM_STDERR => Style::default().fg(Color::LightYellow),
                        _ => Style::default(),
                    };
                    job.log.push_back(ansi_line(&data.line, style));
                }
                JobEvent::JobOutputChunk { data, .. } => {
                    for line in String::from_utf8_lossy(&data.bytes).lines() {
                        job.log.push_back(ansi_line(line, Style::default()));
                    }
                }
                JobEvent::JobProgress { data, .. } => job.step = data.step.clone(),
                JobEvent::JobFailed { data, .. } => {
                    job.log.push_back(Line::styled(
                        data.error.clone(),
                        Style::default().fg(Color::Red),
                    ));
                }
                JobEvent::JobCancelled { data, .. } => {
                    job.log.push_back(Line::styled(
                        data.reason.clone(),
                        Style::default().fg(Color::Magenta),
                    ));
                }
                _ => {}
            }
            while job.log.len() > LOG_LINES {
                job.log.pop_front();
            }
            if let Some(status) = self.plugin.status(&job.id) {
                job.status = status;
            }
        }
        // Status (percent) changes between events too.
        for job in &mut self.jobs {
            if !job.status.is_finished()
                && let Some(status) = self.plugin.status(&job.id)
            {
                job.status = status;
            }
        }
    }

    fn draw(&mut self, frame: &mut ratatui::Frame<'_>) {
        let rows = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Min(5),
                Constraint::Length(3),
                Constraint::Length(1),
            ])
            .split(frame.area());
        let columns = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Percentage(38), Constraint::Percentage(62)])
            .split(rows[0]);

        let items: Vec<ListItem<'_>> = self
            .jobs
            .iter()
            .map(|job| {
                let (text, color) = status_text(&job.status);
                ListItem::new(Line::from(vec![
                    Span::styled(format!("{:<11}", text), Style::default().fg(color)),
                    Span::raw(format!("{} {}", job.id, job.label)),
                ]))
            })
            .collect();
        let list = List::new(items)
            .block(Block::default().borders(Borders::ALL).title(" jobs "))
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
        frame.render_stateful_widget(list, columns[0], &mut self.list);

        let (title, lines) = match self.list.selected().and_then(|i| self.jobs.get(i)) {
            Some(job) => {
                let step = job
                    .step
                    .as_deref()
                    .map(|s| format!(" · {s}"))
                    .unwrap_or_default();
                (
                    format!(" {} {}{step} ", job.id, job.label),
                    job.log.iter().cloned().collect::<Vec<_>>(),
                )
            }
            None => (
                " log ".to_string(),
                vec![Line::raw("start a job with a digit key")],
            ),
        };
        let height = columns[1].height.saturating_sub(2);
        let top = (lines.len() as u16)
            .saturating_sub(height)
            .saturating_sub(self.scroll);
        let log = Paragraph::new(lines)
            .block(Block::default().borders(Borders::ALL).title(title))
            .wrap(Wrap { trim: false })
            .scroll((top, 0));
        frame.render_widget(log, columns[1]);

        let menu: Vec<Span<'_>> = self
            .menu
            .iter()
            .flat_map(|m| {
                [
                    Span::styled(
                        format!(" {} ", m.key),
                        Style::default().fg(Color::Black).bg(Color::Cyan),
                    ),
                    Span::raw(format!(" {}  ", m.label)),
                ]
            })
            .collect();
        frame.render_widget(
            Paragraph::new(Line::from(menu)).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" start (digit) · c cancel · ↑↓ select · PgUp/PgDn scroll · q quit "),
            ),
            rows[1],
        );

        let running = self
            .jobs
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Running { .. }))
            .count();
        let pending = self
            .jobs
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Pending))
            .count();
        let status = format!(
            " jobwarden · {} · {running} running · {pending} pending · {}",
            self.policy_name, self.message
        );
        frame.render_widget(
            Paragraph::new(status).style(Style::default().fg(Color::Black).bg(Color::Gray)),
            rows[2],
        );
    }
}

fn status_text(status: &JobStatus) -> (String, Color) {
    match status {
        JobStatus::Pending => ("pending".into(), Color::Gray),
        JobStatus::Running {
            percent: Some(p), ..
        } => (format!("run {p:>3}%"), Color::Cyan),
        JobStatus::Running { .. } => ("running".into(), Color::Cyan),
        JobStatus::Completed { .. } => ("done".into(), Color::Green),
        JobStatus::Failed {
            exit_code: Some(c), ..
        } => (format!("failed {c}"), Color::Red),
        JobStatus::Failed { .. } => ("failed".into(), Color::Red),
        JobStatus::Cancelled { .. } => ("cancelled".into(), Color::Magenta),
    }
}

/// Renders a line whose only escape sequences are SGR colours (jobwarden
/// has already removed everything else) as styled spans.
fn ansi_line(text: &str, base: Style) -> Line<'static> {
    let mut spans = Vec::new();
    let mut style = base;
    let mut rest = text;
    while let Some(start) = rest.find("\u{1b}[") {
        if start > 0 {
            spans.push(Span::styled(rest[..start].to_string(), style));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find('m') else { break };
        style = apply_sgr(style, base, &after[..end]);
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        spans.push(Span::styled(rest.to_string(), style));
    }
    Line::from(spans)
}

fn apply_sgr(mut style: Style, base: Style, params: &str) -> Style {
    const COLORS: [Color; 8] = [
        Color::Black,
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
        Color::Cyan,
        Color::Gray,
    ];
    let codes: Vec<u16> = params
        .split([';', ':'])
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    let mut i = 0;
    while i < codes.len().max(1) {
        match codes.get(i).copied().unwrap_or(0) {
            0 => style = base,
            1 => style = style.add_modifier(Modifier::BOLD),
            3 => style = style.add_modifier(Modifier::ITALIC),
            4 => style = style.add_modifier(Modifier::UNDERLINED),
            22 => style = style.remove_modifier(Modifier::BOLD),
            n @ 30..=37 => style = style.fg(COLORS[(n - 30) as usize]),
            39 => style = style.fg(base.fg.unwrap_or(Color::Reset)),
            n @ 40..=47 => style = style.bg(COLORS[(n - 40) as usize]),
            49 => style = style.bg(Color::Reset),
            n @ 90..=97 => {
                style = style
                    .fg(COLORS[(n - 90) as usize])
                    .add_modifier(Modifier::BOLD)
            }
            38 | 48 if codes.get(i + 1) == Some(&5) => {
                let color = Color::Indexed(codes.get(i + 2).copied().unwrap_or(0) as u8);
                style = if codes[i] == 38 {
                    style.fg(color)
                } else {
                    style.bg(color)
                };
                i += 2;
            }
            38 | 48 if codes.get(i + 1) == Some(&2) => {
                let c = |k| codes.get(i + k).copied().unwrap_or(0) as u8;
                let color = Color::Rgb(c(2), c(3), c(4));
                style = if codes[i] == 38 {
                    style.fg(color)
                } else {
                    style.bg(color)
                };
                i += 4;
            }
            _ => {}
        }
        i += 1;
    }
    style
}

/// The terminal crossterm reads keys from: stdin when it is a terminal,
/// else /dev/tty (crossterm's own rule).
#[cfg(unix)]
enum Tty {
    Stdin,
    Dev(std::fs::File),
}

#[cfg(unix)]
impl Tty {
    fn open() -> std::io::Result<Self> {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            Ok(Self::Stdin)
        } else {
            std::fs::File::open("/dev/tty").map(Self::Dev)
        }
    }

    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Self::Stdin => std::io::stdin().as_raw_fd(),
            Self::Dev(file) => file.as_raw_fd(),
        }
    }
}
