//! `Checkpoint`: not supported (a VM's containers would need guest-side CRIU).

use crate::shim::ShimError;

/// Always fails with a clear "not supported".
pub fn checkpoint() -> Result<(), ShimError> {
    Err(ShimError::Unsupported("checkpoint"))
}
