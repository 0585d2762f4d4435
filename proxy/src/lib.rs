//! switchyard-proxy
