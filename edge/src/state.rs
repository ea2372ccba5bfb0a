//! What the viewer endpoints are served with.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::attendance::Attendance;
use crate::config::EdgeConfig;
use crate::metrics::EdgeMetrics;
use crate::replay::Replays;

#[derive(Debug, Clone)]
pub struct ViewerState {
    pub attendance: Arc<Attendance>,
    pub admission: Arc<Admission>,
    pub config: Arc<EdgeConfig>,
    pub edge_id: Arc<str>,
    /// Asks fanout for what resuming viewers missed.
    pub replays: Arc<Replays>,
    pub metrics: EdgeMetrics,
    /// Cancelled when the edge starts draining.
    pub shutdown: CancellationToken,
}

// For the [`crate::admission::Viewer`] extractor.
impl FromRef<ViewerState> for Arc<Admission> {
    fn from_ref(state: &ViewerState) -> Self {
        state.admission.clone()
    }
}

impl FromRef<ViewerState> for EdgeMetrics {
    fn from_ref(state: &ViewerState) -> Self {
        state.metrics.clone()
    }
}
