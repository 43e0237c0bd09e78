//! [`PluginError`]: how a call failed, so the host knows what to do next.
//!
//! - [`PluginError::reject`]: the input is bad; the host does not retry it
//!   (a config value that does not parse, a message the store refuses);
//! - [`PluginError::unavailable`]: something the plugin depends on (disk,
//!   network) is down; the host backs off and counts it against the
//!   plugin's failure budget (an `std::io::Error` converts to this);
//! - [`PluginError::retry_after`]: busy; try again after this many ms;
//! - [`PluginError::other`]: anything else.
//!
//! The message is what `/api/plugins` shows as the plugin's `last_error`.

use crate::PluginError;

impl PluginError {
    pub fn reject(why: impl std::fmt::Display) -> PluginError {
        PluginError::Reject(why.to_string())
    }
    pub fn unavailable(why: impl std::fmt::Display) -> PluginError {
        PluginError::Unavailable(why.to_string())
    }
    pub fn other(why: impl std::fmt::Display) -> PluginError {
        PluginError::Other(why.to_string())
    }
    pub fn retry_after(ms: u64) -> PluginError {
        PluginError::RetryAfter(ms)
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> PluginError {
        PluginError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_io_errors() {
        assert_eq!(PluginError::reject(5), PluginError::Reject("5".into()));
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(
            PluginError::from(io),
            PluginError::Unavailable("gone".into())
        );
        assert_eq!(PluginError::retry_after(3), PluginError::RetryAfter(3));
    }
}
