//! How a request for a model is served, whatever API it came through: which
//! model the caller may have, where it runs ([`access`]), how the request
//! gets there ([`Inference::dispatch`], and [`forward`] for a node
//! elsewhere), and what it cost ([`metering`]). The OpenAI and Anthropic
//! handlers are thin layers of parsing and shaping over this.

pub mod access;
pub mod admission;
pub mod archive;
mod dispatch;
mod engine_messages;
pub mod engine_proxy;
pub mod forward;
pub mod metering;
mod timing;

use std::sync::Arc;

use self::access::ModelAccess;
use self::admission::Admissions;
use self::archive::ResponseArchive;
use self::metering::Metering;
use crate::catalog::ModelCatalog;

pub use self::dispatch::{Route, WAKE_WAIT_HEADER};

/// The models a server serves, how it reaches them, and how it meters them.
#[derive(Clone)]
pub struct Inference {
    pub catalog: Arc<ModelCatalog>,
    pub access: Arc<dyn ModelAccess>,
    /// Usage metering, where this server meters (a gateway with a database).
    pub metering: Option<Metering>,
    /// Stored responses of the Responses API, where there is a database.
    pub responses: Option<ResponseArchive>,
    /// Requests in hand per model and key, bounded.
    pub admissions: Arc<Admissions>,
    /// Where requests' latencies and tokens are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Inference {
    /// Serves `catalog` through `access`, unmetered.
    pub fn new(catalog: Arc<ModelCatalog>, access: Arc<dyn ModelAccess>) -> Self {
        Self { catalog, access, metering: None, responses: None, admissions: Arc::default(), metrics: Arc::default() }
    }
}
