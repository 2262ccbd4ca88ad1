//! enroll
