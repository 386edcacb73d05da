//! `GET /api/cluster`: the cluster-wide board, every shared task's record as the cluster's
//! key-value bucket holds it (status, node, agent, takes, attempts, revision), read at each
//! request, the same rows `mailroom board --cluster --json` prints. The node's own tasks stay
//! on `/api/tasks`.
//!
//! The HTTP surface does not speak to NATS itself: whoever starts it (`mailroom run`, when
//! `[cluster]` is configured) hands it a [`ClusterReader`]. Without one the route answers 404;
//! when the cluster cannot be read, 503 with the reason.

use crate::AppState;
use crate::routes::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use std::sync::Arc;

/// Reads the cluster-wide board: the rows as JSON, or why they cannot be read.
pub type ClusterReader = Arc<dyn Fn() -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

pub async fn board(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some(read) = &state.cluster else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_a_cluster_node",
            "this broker is not a cluster node ([cluster] is not configured)",
        ));
    };
    let node = state.cfg.cluster.as_ref().map(|c| c.node.clone());
    match read().await {
        Ok(tasks) => Ok(Json(json!({ "node": node, "tasks": tasks }))),
        Err(reason) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cluster_unreachable", reason)),
    }
}
