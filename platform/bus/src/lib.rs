//! The message bus of the platform.
