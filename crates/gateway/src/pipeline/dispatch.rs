//! The innermost service: route, call the upstream, shape the answer, settle.
