//! Password hashing: argon2id with the knobs' cost, stored as a PHC string (`$argon2id$v=19$…`).
//!
//! Hashing costs tens of milliseconds of CPU at the default cost, so [`PasswordHasher::hash`]
//! runs it on tokio's blocking pool: an async worker thread must never be held that long.
//! A semaphore bounds concurrent hashes to the number of cores: each one allocates
//! `argon2_memory_kib` (19 MiB by default), and an unbounded burst of sign-ups would otherwise
//! spawn up to 512 blocking threads and that many buffers for no extra throughput.
//! The plain password never leaves this module except as its hash, and is never logged.

use std::sync::Arc;

use tokio::sync::Semaphore;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::{ConfigError, Knobs};
use crate::error::ApiError;

/// An argon2id hasher configured once from the knobs; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Arc<Argon2<'static>>,
    /// One permit per concurrent hash (see the module docs).
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Builds the hasher from `argon2_memory_kib`, `argon2_iterations` and
    /// `argon2_parallelism`; parameters argon2 rejects (e.g. memory below 8 × lanes) are a
    /// [`ConfigError`].
    pub fn from_knobs(knobs: &Knobs) -> Result<PasswordHasher, ConfigError> {
        let params = Params::new(
            knobs.argon2_memory_kib,
            knobs.argon2_iterations,
            knobs.argon2_parallelism,
            None,
        )
        .map_err(|e| ConfigError::Argon2Params {
            memory_kib: knobs.argon2_memory_kib,
            iterations: knobs.argon2_iterations,
            parallelism: knobs.argon2_parallelism,
            reason: e.to_string(),
        })?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Ok(PasswordHasher {
            argon2: Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)),
            permits: Arc::new(Semaphore::new(cores)),
        })
    }

    /// Hashes `password` with a fresh random salt on the blocking pool; returns the PHC string.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let argon2 = Arc::clone(&self.argon2);
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| {
                ApiError::Internal(anyhow::anyhow!("password hashing is shut down: {e}"))
            })?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
                .map_err(|e| anyhow::anyhow!("encoding a password salt: {e}"))?;
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("password hashing task failed: {e}")))?
        .map_err(ApiError::Internal)
    }

    /// Checks `password` against a PHC string produced by [`PasswordHasher::hash`].
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        PasswordHash::new(phc).is_ok_and(|parsed| {
            self.argon2
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }
}
