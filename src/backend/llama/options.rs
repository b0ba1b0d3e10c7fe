//! The engine's GPU-facing choices: how a step's tokens go to llama.cpp
//! ([`Batching`]), what the KV cache stores ([`KvType`]) and how its cells
//! are laid out ([`KvLayout`]), and the one check of their combinations.
//!
//! Invariant: a combination llama.cpp would refuse (or that would void what
//! a mode is named for) is refused here with one line naming the flag,
//! before a context or an output file exists.

use serde::{Deserialize, Serialize};

use super::LlamaConfig;
use crate::backend::BackendError;

/// How one engine step reaches llama.cpp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Batching {
    /// Every decode token in one call, then one call per prefilling
    /// sequence: a sequence's logits never depend on its neighbours (on
    /// CPU), so output is byte-identical at any `--parallel`. The CPU
    /// default.
    Invariant,
    /// Every decode token and as many prompt chunks as the step budget
    /// allows, of any number of sequences, in one call (llama-server's
    /// way): one launch and synchronisation per step instead of one per
    /// prefilling sequence. Deterministic for a fixed configuration, not
    /// across `--parallel`. The default of `--features cuda` builds.
    Packed,
}

impl Default for Batching {
    fn default() -> Self {
        // GPU kernels promise no batch invariance anyway, so a GPU build
        // takes the faster way; a CPU build keeps the invariant file.
        if cfg!(feature = "cuda") {
            Batching::Packed
        } else {
            Batching::Invariant
        }
    }
}

/// What the KV cache stores per element (llama.cpp `type_k` and `type_v`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    /// 16-bit floats: 2 bytes an element (llama.cpp's default).
    #[default]
    F16,
    /// 8-bit blocks: 34 bytes per 32 elements, about half of f16. A
    /// quantised V cache needs flash attention.
    Q8_0,
}

impl KvType {
    /// Bytes per `n` cached elements, as ggml stores them.
    pub fn bytes(self, n: u64) -> u64 {
        match self {
            KvType::F16 => 2 * n,
            // ggml's block_q8_0: 32 int8 values and one f16 scale.
            KvType::Q8_0 => n.div_ceil(32) * 34,
        }
    }

    pub(super) fn ggml(self) -> llama_cpp_2::context::params::KvCacheType {
        use llama_cpp_2::context::params::KvCacheType as K;
        match self {
            KvType::F16 => K::F16,
            KvType::Q8_0 => K::Q8_0,
        }
    }
}

/// Where sequences keep their KV cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvLayout {
    /// A stream of `--context` cells per sequence, reserved whether used or
    /// not (`kv_unified = false`): a sequence's attention reads only its own
    /// cells, which keeps `invariant` batching byte-identical.
    #[default]
    Split,
    /// One pool of `--kv-pool` cells shared by every sequence, each taking
    /// what it holds (llama-server's way, `kv_unified = true`): memory
    /// follows use, and a packed call of many sequences is one ubatch.
    /// Attention then spans the neighbours' cells (masked), so it needs
    /// `packed` batching.
    Unified,
}

macro_rules! parse_enum {
    ($t:ty, $flag:literal, $($name:literal => $v:expr),+) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($v),)+
                    other => Err(format!(
                        concat!("expected ", $("`", $name, "` ",)+ "for ", $flag, ", found `{}`"),
                        other
                    )),
                }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $(if *self == $v { return f.write_str($name); })+
                Ok(())
            }
        }
    };
}

parse_enum!(Batching, "--batching", "invariant" => Batching::Invariant, "packed" => Batching::Packed);
parse_enum!(KvType, "--kv-type", "f16" => KvType::F16, "q8_0" => KvType::Q8_0);
parse_enum!(KvLayout, "--kv-layout", "split" => KvLayout::Split, "unified" => KvLayout::Unified);

impl LlamaConfig {
    /// Refuse combinations llama.cpp would refuse, or that would break
    /// what a mode promises; one line naming the flag.
    pub fn check(&self) -> Result<(), BackendError> {
        if self.kv_type != KvType::F16 && !self.flash_attention {
            return Err(BackendError::Config(format!(
                "--kv-type {}: llama.cpp quantises the V cache only with flash attention (expected --flash-attn as well, or --kv-type f16)",
                self.kv_type
            )));
        }
        if self.kv_layout == KvLayout::Unified && self.batching != Batching::Packed {
            return Err(BackendError::Config(
                "--kv-layout unified: expected --batching packed (in a shared pool a sequence's attention spans its neighbours' cells, so its logits depend on them and `invariant` could not keep its promise)".into(),
            ));
        }
        if let Some(pool) = self.kv_pool_tokens {
            if self.kv_layout != KvLayout::Unified {
                return Err(BackendError::Config(
                    "--kv-pool: expected --kv-layout unified as well (a split cache reserves --context cells per sequence)".into(),
                ));
            }
            if pool < self.context_per_sequence {
                return Err(BackendError::Config(format!(
                    "--kv-pool {pool}: expected at least --context ({}) cells, so one sequence can fill its context",
                    self.context_per_sequence
                )));
            }
        }
        Ok(())
    }

    /// What of these options changes the tokens a run generates, for the
    /// run's identity hash: `None` for the CPU-invariant defaults, so files
    /// written before these options existed still resume and merge.
    pub fn output_key(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.batching == Batching::Packed {
            parts.push("batching packed".to_string());
        }
        if self.kv_type != KvType::F16 {
            parts.push(format!("kv_type {}", self.kv_type));
        }
        if self.kv_layout != KvLayout::Split {
            parts.push(format!("kv_layout {}", self.kv_layout));
        }
        if let Some(pool) = self.kv_pool_tokens {
            parts.push(format!("kv_pool {pool}"));
        }
        if self.flash_attention {
            parts.push("flash_attention".to_string());
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_say_what_was_expected() {
        for b in [Batching::Invariant, Batching::Packed] {
            assert_eq!(b.to_string().parse::<Batching>(), Ok(b));
        }
        for k in [KvType::F16, KvType::Q8_0] {
            assert_eq!(k.to_string().parse::<KvType>(), Ok(k));
        }
        let e = "q4".parse::<KvType>().unwrap_err();
        assert!(
            e.contains("`f16`") && e.contains("`q8_0`") && e.contains("--kv-type"),
            "{e}"
        );
    }

    #[test]
    fn quantised_v_needs_flash_attention_and_unified_needs_packed() {
        let mut c = LlamaConfig {
            kv_type: KvType::Q8_0,
            ..LlamaConfig::default()
        };
        let e = c.check().unwrap_err().to_string();
        assert!(
            e.contains("--kv-type q8_0") && e.contains("--flash-attn"),
            "{e}"
        );
        c.flash_attention = true;
        c.check().unwrap();
        c.kv_layout = KvLayout::Unified;
        c.batching = Batching::Invariant;
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("--batching packed"));
        c.batching = Batching::Packed;
        c.check().unwrap();
        assert_eq!(KvType::Q8_0.bytes(64), 68);
    }

    #[test]
    fn cpu_defaults_leave_the_run_identity_as_it_was() {
        let c = LlamaConfig {
            batching: Batching::Invariant,
            ..LlamaConfig::default()
        };
        assert_eq!(c.output_key(), None);
        let p = LlamaConfig {
            batching: Batching::Packed,
            ..c
        };
        assert_eq!(p.output_key().as_deref(), Some("batching packed"));
    }
}
