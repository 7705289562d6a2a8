//! `GET /events`: job state changes from the shared [`crate::EventBus`] as
//! server-sent events. Memory stays bounded whatever the client does: the
//! bus keeps a fixed ring of recent events, a client that reads too slowly
//! skips ahead (it gets one `lagged` event saying how many it missed), and
//! the number of open streams is capped. Streams end when the server shuts
//! down, so graceful shutdown is not held up by listeners.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::error::ApiError;
use super::ApiState;

/// Interval of SSE keep-alive comments, so proxies keep idle streams open [15 s].
pub const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Opens an event stream. Each job change is an event named `job` whose
/// data is a [`crate::JobEvent`] as JSON; a skipped stretch is an event
/// named `lagged` with data `{"skipped": n}`.
pub(super) async fn events(
    State(state): State<ApiState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = state
        .inner
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                "{} event streams are open already, the configured limit; close one or retry later",
                state.inner.config.max_event_streams
            ),
            )
        })?;
    let receiver = state.inner.client.observers().events.subscribe();
    let mut closing = state.inner.closing.subscribe();
    let closed = async move {
        // Also ends the stream if the state (and its sender) is gone.
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let stream = BroadcastStream::new(receiver)
        .map(move |item| {
            // The slot is released when the stream (and this closure) is dropped.
            let _slot = &slot;
            Ok(match item {
                Ok(event) => Event::default()
                    .event("job")
                    .json_data(&event)
                    .unwrap_or_else(|_| Event::default().comment("unencodable event")),
                Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "event stream client lagged; skipping ahead");
                    Event::default()
                        .event("lagged")
                        .data(format!("{{\"skipped\":{skipped}}}"))
                }
            })
        })
        .take_until(closed);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(EVENT_KEEP_ALIVE)))
}
