//! `GET /api/events`: every journaled transition as a Server-Sent Event whose `id:` is its
//! journal sequence and whose data is the record as the journal holds it.
//!
//! Resume: a client that reconnects with `Last-Event-ID: N` (or asks `?after=N`) first gets
//! every record after `N` still in the journal, read from the segments (archived ones included)
//! off the runtime thread, then the live stream. The subscription is taken *before* the journal
//! is read, so nothing committed in between is lost, and every record at or below the last one
//! sent is skipped, so nothing is sent twice. A subscriber that falls behind the live stream
//! (the broadcast says it lagged) catches up from the journal the same way, and so does one whose
//! broker reopened its engine (the stream it followed closed). Without either, the stream starts
//! with what is committed next.

use crate::AppState;
use crate::routes::ApiError;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use mailroom::journal::{self, JournalError, Record};
use runtime_layout::{Fs, Layout};
use serde::Deserialize;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// Events buffered for a client before the producer waits for it.
const BUFFER: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Resume after this sequence (as `Last-Event-ID` does).
    pub after: Option<u64>,
}

/// The SSE event of a record.
pub fn event_of(rec: &Record) -> Event {
    let data = serde_json::to_string(rec).unwrap_or_else(|_| "{}".into());
    Event::default().id(rec.seq.to_string()).data(data)
}

pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match (header, q.after) {
        (Some(h), _) => Some(
            h.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("Last-Event-ID: not a journal sequence"))?,
        ),
        (None, a) => a,
    };
    let mut sub = state.handle.subscribe().await?;
    let (tx, rx) = mpsc::channel::<Event>(BUFFER);
    let (fs, layout, handle) = (state.fs.clone(), state.layout.clone(), state.handle.clone());
    tokio::spawn(async move {
        let _ = tx
            .send(
                Event::default().retry(Duration::from_secs(2)).comment(format!("live from {}", sub.from_seq)),
            )
            .await;
        let mut last = after.unwrap_or(sub.from_seq.saturating_sub(1));
        if after.is_some() {
            match catch_up(&fs, &layout, last, &tx).await {
                Ok(l) => last = last.max(l),
                Err(e) => return fail(&tx, e).await,
            }
        }
        loop {
            let rec = tokio::select! {
                r = sub.records.recv() => r,
                _ = tx.closed() => return,
            };
            match rec {
                Ok(rec) if rec.seq > last => {
                    if tx.send(event_of(&rec)).await.is_err() {
                        return;
                    }
                    last = rec.seq;
                }
                Ok(_) => {} // already sent from the journal
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "event stream lagged; catching up from the journal");
                    match catch_up(&fs, &layout, last, &tx).await {
                        Ok(l) => last = last.max(l),
                        Err(e) => return fail(&tx, e).await,
                    }
                }
                Err(RecvError::Closed) => {
                    // The broker reopened its engine (after running out of space, say): follow the
                    // new one, catching up from the journal on what came in between.
                    let Ok(again) = handle.subscribe().await else { return };
                    sub = again;
                    match catch_up(&fs, &layout, last, &tx).await {
                        Ok(l) => last = last.max(l),
                        Err(e) => return fail(&tx, e).await,
                    }
                }
            }
        }
    });
    let events =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn fail(tx: &mpsc::Sender<Event>, e: String) {
    tracing::warn!(error = %e, "event stream: cannot read the journal");
    let _ = tx.send(Event::default().event("error").data(e)).await;
}

/// Sends every record after `after` that the journal holds, in order; returns the last sent.
async fn catch_up(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    after: u64,
    tx: &mpsc::Sender<Event>,
) -> Result<u64, String> {
    let (fs, layout, tx) = (fs.clone(), layout.clone(), tx.clone());
    tokio::task::spawn_blocking(move || {
        let mut last = after;
        let mut closed = false;
        records_after(fs.as_ref(), &layout, after, |rec| {
            if closed || rec.seq <= last {
                return;
            }
            if tx.blocking_send(event_of(&rec)).is_err() {
                closed = true; // the client left: read no further than needed
            }
            last = rec.seq;
        })
        .map_err(|e| e.to_string())?;
        Ok(last)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Calls `f` for every journal record with a sequence above `after`, in order, reading only the
/// segments that can hold one (a segment's name is its first sequence).
pub fn records_after(
    fs: &dyn Fs,
    layout: &Layout,
    after: u64,
    mut f: impl FnMut(Record),
) -> Result<(), JournalError> {
    let segs: Vec<(u64, PathBuf)> = journal::all_segments(fs, &layout.journal_dir())?
        .into_iter()
        .filter_map(|p| {
            // Archived segments may be compressed (`segment-N.jsonl.zst`): the name is the same.
            let (first, _) = journal::archive::segment_number(p.file_name()?.to_str()?)?;
            Some((first, p))
        })
        .collect();
    let mut notes = journal::Notes::default();
    for (i, (_, path)) in segs.iter().enumerate() {
        // Every record of this segment is below the next one's first: skip it if that is not
        // above `after + 1`.
        if segs.get(i + 1).is_some_and(|(next, _)| *next <= after + 1) {
            continue;
        }
        journal::read_segment(
            fs,
            path,
            |r, _, _| {
                if r.seq > after {
                    f(r)
                }
            },
            &mut notes,
        )?;
    }
    for line in &notes.set_aside {
        // Set aside by the broker too: such a record is in no stream.
        tracing::warn!(%line, "event stream: an unreadable journal line is skipped");
    }
    Ok(())
}
