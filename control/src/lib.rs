//! switchyard-control
