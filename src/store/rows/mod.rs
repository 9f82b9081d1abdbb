//! Converting between table rows and objects, the same for both backends.
//! Rows are read leniently: a value someone wrote by hand that accord would
//! never write still becomes an object (which then differs, i.e. drift)
//! rather than an error that stops every sync.
mod assemble;
mod query;

pub use assemble::{list_to_json, Assembler, Columns};
pub use query::LiveTable;
