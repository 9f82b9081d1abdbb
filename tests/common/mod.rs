pub mod builders;
