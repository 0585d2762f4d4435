//! Deployment routes through `router(state).oneshot(..)` over the in-memory data plane.
