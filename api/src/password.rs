//! Password hashing: argon2id with the knobs' cost, stored as a PHC string (`$argon2id$v=19$…`).
//!
//! Hashing costs tens of milliseconds of CPU at the default cost, so [`PasswordHasher::hash`]
//! runs it on tokio's blocking pool: an async worker thread must never be held that long.
//! A semaphore bounds concurrent hashes to the number of cores, and each hash reuses one of at
//! most that many `argon2_memory_kib` work buffers (19 MiB by default) instead of allocating a
//! fresh one: an unbounded burst of sign-ups would otherwise spawn up to 512 blocking threads,
//! and freed 19 MiB buffers linger in per-thread malloc arenas — the process's RSS grew by
//! ~150 MiB after a few dozen sign-ups before this, which a memory comparison would misreport.
//! The plain password never leaves this module except as its hash, and is never logged.

use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::config::{ConfigError, Knobs};
use crate::error::ApiError;

/// An argon2id hasher configured once from the knobs; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Arc<Argon2<'static>>,
    /// One permit per concurrent hash (see the module docs).
    permits: Arc<Semaphore>,
    /// Work buffers of `params.block_count()` blocks, reused; never more than there are permits.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
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
            buffers: Arc::new(Mutex::new(Vec::with_capacity(cores))),
        })
    }

    /// Hashes `password` with a fresh random salt on the blocking pool; returns the PHC string.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| {
                ApiError::Internal(anyhow::anyhow!("password hashing is shut down: {e}"))
            })?;
        let hasher = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hasher.hash_blocking(password.as_bytes())
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("password hashing task failed: {e}")))?
        .map_err(ApiError::Internal)
    }

    /// The hash itself, with a reused work buffer (what `Argon2::hash_password` does, minus its
    /// per-call allocation of the whole memory cost).
    fn hash_blocking(&self, password: &[u8]) -> anyhow::Result<String> {
        let salt_bytes = rand::random::<[u8; 16]>();
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|e| anyhow::anyhow!("encoding a password salt: {e}"))?;
        let params = self.argon2.params();
        let mut blocks = self
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| vec![Block::new(); params.block_count()]);
        let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = Output::init_with(output_len, |out| {
            Ok(self.argon2.hash_password_into_with_memory(
                password,
                &salt_bytes,
                out,
                &mut blocks,
            )?)
        });
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(blocks);
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params)
                .map_err(|e| anyhow::anyhow!("encoding argon2 parameters: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(output.map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?),
        };
        Ok(phc.to_string())
    }

    /// Checks `password` against a PHC string produced by [`PasswordHasher::hash`].
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        use argon2::password_hash::PasswordVerifier as _;
        PasswordHash::new(phc).is_ok_and(|parsed| {
            self.argon2
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }
}
