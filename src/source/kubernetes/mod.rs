//! The Kubernetes source: `Organization`, `Permit` and `Enrollment` custom
//! resources, watched, applied object by object, with the result written
//! back to each object's status.

pub mod resources;
