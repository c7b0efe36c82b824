pub mod ddl;
pub mod postgres;
pub mod schema;
