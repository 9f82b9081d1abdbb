pub mod builders;
pub mod controller;
pub mod db;
pub mod git_servers;
