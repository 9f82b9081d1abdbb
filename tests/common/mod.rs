pub mod builders;
pub mod cli;
pub mod controller;
pub mod db;
pub mod git_servers;
