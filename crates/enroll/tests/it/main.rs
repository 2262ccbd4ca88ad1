//! Integration tests of the enroll crate: real captures, Microsoft samples, the CA, rejections.

mod ca;
mod provisioning;
mod rejections;
mod requests;
mod responses;
mod support;
