pub mod builders;
pub mod db;
