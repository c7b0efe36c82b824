pub mod ddl;
pub mod events;
pub mod postgres;
pub mod replay;
pub mod schema;
pub mod sql;
