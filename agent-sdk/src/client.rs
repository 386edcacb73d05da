//! The producer's and operator's handle: submit, cancel, retry and any message, each delivered
//! into the broker's inbox through `tmp/` and, by default, answered by the broker (see [`Ack`]).
//! A client that waits for the answer sends its message on the broker's local socket when one is
//! offered (`crate::line`), and as a file otherwise or whenever the socket gives no answer.

use crate::Error;
use crate::ack::{self, Ack, Verdict};
use crate::line::Line;
use protocol::{Message, Task, socket};
use runtime_layout::{Durability, Fs, Layout, NameSource, deliver};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// How much longer than its wait an await's answer may take before the socket counts as silent
/// (the agent then watches the directories for a while: `offers.rs`).
const AWAIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// A producer or operator: drops messages into the broker's inbox. Cheap to clone: clones share
/// the filesystem and the name source.
#[derive(Clone)]
pub struct Client {
    pub(crate) layout: Layout,
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) names: Arc<NameSource>,
    /// How much the client itself fsyncs a message; `None` until set (then it follows `ack`).
    durability: Option<Durability>,
    ack: Ack,
    /// The broker's local socket, when the client may use it.
    line: Option<Line>,
}

impl Client {
    /// Opens an initialised root (one made by `mailroom init` or a broker's first start).
    pub fn open(root: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(crate::root_fs(root.as_ref())?, root)
    }

    /// Like [`Client::open`], on the filesystem `fs` (every operation of the client goes through it).
    pub fn open_with(fs: Arc<dyn Fs>, root: impl AsRef<Path>) -> Result<Self, Error> {
        let layout = Layout::new(root.as_ref());
        if !layout.is_initialised(fs.as_ref()) {
            return Err(Error::NotInitialised { root: root.as_ref().to_path_buf() });
        }
        let line = Some(Line::default());
        Ok(Self {
            layout,
            fs,
            names: Arc::new(NameSource::new()),
            durability: None,
            ack: Ack::default(),
            line,
        })
    }

    /// Names messages from `names` instead of a source of the client's own. The broker reads
    /// messages in name order; names from different sources made in the same microsecond are
    /// ordered by their random bits, names from one source by its counter. So a test that gives
    /// all its handles one source built on its manual clock sees the broker read their messages
    /// in the same order in every run (see [`NameSource`]).
    pub fn with_names(mut self, names: Arc<NameSource>) -> Self {
        self.names = names;
        self
    }

    /// Whether messages may go on the broker's local socket (the default) or always as files
    /// (`false`: a test of the inbox, a client that wants every message on disk before it is
    /// taken).
    pub fn with_socket(mut self, use_it: bool) -> Self {
        self.line = use_it.then(Line::default);
        self
    }

    /// How the client learns its messages were taken: by the broker's answer (the default, see
    /// [`Ack`]), or not at all.
    pub fn with_ack(mut self, ack: Ack) -> Self {
        self.ack = ack;
        self
    }

    /// How much the client fsyncs its own messages. By default nothing when it waits for the
    /// broker's answer (the broker's journal makes the message durable before it answers) and
    /// [`Durability::Always`] (the file and the inbox directory) when it does not wait.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// The durability a message is written with.
    pub(crate) fn durability(&self) -> Durability {
        self.durability.unwrap_or(match self.ack {
            Ack::Wait(_) => Durability::Never,
            Ack::None => Durability::Always,
        })
    }

    /// How the client learns its messages were taken.
    pub fn ack(&self) -> Ack {
        self.ack
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// What the client's filesystem has done so far (files created, renames, fsyncs, reads,
    /// listings), as it counts them ([`Fs::counts`]): shared with every clone and every handle
    /// opened on the same `Fs`. `None` on a filesystem that does not count.
    pub fn fs_counts(&self) -> Option<runtime_layout::FsCounts> {
        self.fs.counts()
    }

    /// Submits a task (validated here first, so a bad task fails at the caller rather than in
    /// quarantine). Returns the name of the message in the broker's inbox once the broker
    /// accepted it (see [`Ack`]).
    pub fn submit(&self, task: &Value) -> Result<String, Error> {
        Task::from_value(task.clone()).map_err(|reason| Error::InvalidTask { reason })?;
        self.send_message(&Message::Submit { task: task.clone() })
    }

    /// Asks the broker to cancel a task (a held claim is revoked).
    pub fn cancel(&self, task_id: &str) -> Result<String, Error> {
        protocol::task::validate_task_id(task_id).map_err(|reason| Error::InvalidTask { reason })?;
        self.send_message(&Message::Cancel { task_id: task_id.to_string() })
    }

    /// Asks the broker to dispatch a FAILED, BLOCKED or CANCELLED task again.
    pub fn retry(&self, task_id: &str) -> Result<String, Error> {
        protocol::task::validate_task_id(task_id).map_err(|reason| Error::InvalidTask { reason })?;
        self.send_message(&Message::Retry { task_id: task_id.to_string() })
    }

    /// Asks the broker to put a quarantined input (`name`, an entry of `broker/quarantine/`) back
    /// into its inbox, to be handled again; one still bad returns to quarantine with its reason.
    pub fn requeue(&self, name: &str) -> Result<String, Error> {
        protocol::names::validate_quarantine_entry(name).map_err(Error::InvalidName)?;
        self.send_message(&Message::Requeue { name: name.to_string() })
    }

    /// Delivers any message into `broker/inbox/new/` through `tmp/` and, unless the client does
    /// not wait ([`Ack::None`]), waits for the broker's answer: `Ok` with the message's name once
    /// it was accepted, [`Error::Refused`] or [`Error::Unanswered`] otherwise.
    pub fn send_message(&self, msg: &Message) -> Result<String, Error> {
        let Ack::Wait(_) = self.ack else { return self.post(msg) };
        let name = self.names.next("msg");
        self.send_named(name, msg, true)
    }

    /// Sends `msg` under `name` and waits for the broker's verdict (the client waits for
    /// answers: [`Ack::Wait`]): on the socket when `socket` says so and one is offered, else, or
    /// when it gives no answer, as the file `name`.
    pub(crate) fn send_named(&self, name: String, msg: &Message, socket: bool) -> Result<String, Error> {
        let timeout = self.ack_wait();
        let bytes = serde_json::to_vec(&msg.to_value()).expect("a JSON value always serialises");
        let started = std::time::Instant::now();
        if let Some(line) = self.line.as_ref().filter(|_| socket) {
            match line.ask(&self.layout.socket_file(), &name, &bytes, timeout) {
                Some(socket::Answer::Accepted { .. }) => return Ok(name),
                Some(socket::Answer::Refused { field, rule, reason }) => {
                    return Err(Error::Refused { message: name, field, rule, reason });
                }
                // No answer on the socket: the same message, under the same name, as a file.
                Some(
                    socket::Answer::Offered { .. } | socket::Answer::Claimed { .. } | socket::Answer::Nothing,
                )
                | None => {}
            }
        }
        deliver(self.fs.as_ref(), &self.layout.broker_inbox(), &name, &bytes, self.durability())?;
        let verdict = self.verdict(&name, timeout.saturating_sub(started.elapsed()))?;
        ack::into_result(name, verdict, timeout)
    }

    /// Asks the broker on its socket to name a task file `req.agent` may claim (`protocol::socket::
    /// Await`). `None` when the socket gives no answer (none, or this client does not use it).
    pub(crate) fn await_offer(&self, req: &socket::Await) -> Option<socket::Answer> {
        // The broker answers at the wait's end at the latest; a pass under way may add to it.
        let timeout = std::time::Duration::from_millis(req.wait_ms) + AWAIT_MARGIN;
        let to_an_await = |a: &socket::Answer| !matches!(a, socket::Answer::Accepted { .. });
        self.line.as_ref()?.ask_line(&self.layout.socket_file(), &req.line(), timeout, to_an_await)
    }

    /// Like [`Client::await_offer`] for an await that carries a report (`after`): its answer
    /// may take as long as the report's verdict and then the wait. `None` when the socket gives
    /// no answer (the report's fate is then unknown: the caller sends it again, as a file under
    /// the same name).
    pub(crate) fn await_after(&self, req: &socket::Await) -> Option<socket::Answer> {
        let timeout = self.ack_wait() + std::time::Duration::from_millis(req.wait_ms) + AWAIT_MARGIN;
        let to_an_await = |a: &socket::Answer| !matches!(a, socket::Answer::Accepted { .. });
        self.line.as_ref()?.ask_line(&self.layout.socket_file(), &req.line(), timeout, to_an_await)
    }

    /// Whether messages may go on the broker's socket and be answered there.
    pub(crate) fn answers_on_socket(&self) -> bool {
        self.line.is_some() && matches!(self.ack, Ack::Wait(_))
    }

    /// How long the client waits for a verdict ([`Ack::Wait`]'s bound; the default's when it
    /// does not wait).
    fn ack_wait(&self) -> std::time::Duration {
        match self.ack {
            Ack::Wait(t) => t,
            Ack::None => match Ack::default() {
                Ack::Wait(t) => t,
                Ack::None => std::time::Duration::ZERO,
            },
        }
    }

    /// Delivers a message as a file without waiting for the answer; returns its name.
    pub fn post(&self, msg: &Message) -> Result<String, Error> {
        let bytes = serde_json::to_vec(&msg.to_value()).expect("a JSON value always serialises");
        let name = self.names.next("msg");
        deliver(self.fs.as_ref(), &self.layout.broker_inbox(), &name, &bytes, self.durability())?;
        Ok(name)
    }

    /// Waits up to `timeout` for the broker's answer to the message `name` (see [`Ack`]).
    pub fn verdict(&self, name: &str, timeout: std::time::Duration) -> Result<Verdict, Error> {
        ack::wait(self.fs.as_ref(), &self.layout, name, timeout)
    }
}
