//! masq as a library: the pipeline `source -> decode -> policy -> sink`, usable from the
//! `masq` binary, the integration tests, the benchmarks and the fuzz targets.

pub mod batch;
pub mod breaker;
pub mod cli;
pub mod decide;
pub mod decode;
pub mod failpoint;
pub mod keys;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod plugin_check;
pub mod plugin_test;
pub mod policy;
pub mod replay;
pub mod reveal;
pub mod run;
pub mod seed;
pub mod setup;
pub mod sink;
pub mod source;
