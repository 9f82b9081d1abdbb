pub mod builders;
pub mod controller;
pub mod db;
