//! Sentence embeddings against the real all-MiniLM-L6-v2 weights (fetched by
//! `.ci/run` with `usersim models pull all-minilm-l6-v2`). A missing model is a
//! failure, not a skip: these checks are the only proof the embedder is right.

use std::path::PathBuf;

use usersim::embed::{cache_path, cosine, embed_cached, EmbedConfig, Embedder};

fn model_dir() -> PathBuf {
    crate::util::embedding_model_dir()
}

fn load(batch_size: usize) -> Embedder {
    let cfg = EmbedConfig {
        model_dir: model_dir(),
        batch_size,
        threads: Some(2),
        ..EmbedConfig::default()
    };
    Embedder::load(&cfg).expect("load model")
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn semantic_similarity_dim_and_norm() {
    let _heavy = crate::util::heavy();
    let e = load(32);
    assert_eq!(e.dim(), 384);
    let texts = s(&[
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
    ]);
    let v = e.embed(&texts).expect("embed");
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), 384);
        let n: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "norm {n}");
    }
    let c01 = cosine(&v[0], &v[1]);
    let c02 = cosine(&v[0], &v[2]);
    let c12 = cosine(&v[1], &v[2]);
    eprintln!(
        "cos(food, bread) = {c01:.4}, cos(food, horse) = {c02:.4}, cos(bread, horse) = {c12:.4}"
    );
    assert!(c01 > 0.6, "{c01}");
    assert!(c02 < 0.35, "{c02}");
    assert!(c12 < 0.35, "{c12}");
}

#[test]
fn padding_does_not_leak_and_order_is_kept() {
    let _heavy = crate::util::heavy();
    let e = load(4);
    let alone = e
        .embed(&s(&["A man is eating food."]))
        .expect("embed alone");
    let long = "This is a considerably longer sentence that goes on and on, with many clauses, \
                so that the short one has to be padded quite a lot within the same batch.";
    let batch = s(&[
        long,
        "A man is eating food.",
        "Another rather long sentence about the weather in the mountains during winter.",
        "",
        "Short.",
        long,
    ]);
    let v = e.embed(&batch).expect("embed batch");
    assert_eq!(v.len(), batch.len());
    let max_diff = alone[0]
        .iter()
        .zip(&v[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("max |alone - in batch| = {max_diff:e}");
    assert!(max_diff < 1e-5, "{max_diff}");
    // duplicates in the same call are identical; empty text still gives a unit vector
    assert_eq!(v[0], v[5]);
    let n: f32 = v[3].iter().map(|a| a * a).sum::<f32>().sqrt();
    assert!((n - 1.0).abs() < 1e-5);
    // deterministic across calls
    assert_eq!(e.embed(&batch).expect("again"), v);
    assert!(e.embed(&[]).expect("empty").is_empty());
}

#[test]
fn truncation_at_max_tokens() {
    let _heavy = crate::util::heavy();
    let model_dir = model_dir();
    let e = Embedder::load(&EmbedConfig {
        model_dir,
        max_tokens: 16,
        ..EmbedConfig::default()
    })
    .expect("load");
    let base = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
    let a = e.embed(&s(&[base])).expect("embed");
    let b = e
        .embed(&s(&[&format!(
            "{base} and a long tail that must be cut off entirely"
        )]))
        .expect("embed");
    let d = a[0]
        .iter()
        .zip(&b[0])
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "{d}");
    let err = Embedder::load(&EmbedConfig {
        model_dir: e_dir(),
        max_tokens: 1000,
        ..EmbedConfig::default()
    })
    .expect_err("too long");
    assert!(err.to_string().contains("max_tokens"), "{err}");
}

fn e_dir() -> PathBuf {
    model_dir()
}

#[test]
fn cache_roundtrip() {
    let _heavy = crate::util::heavy();
    let e = load(32);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("emb-cache");
    let texts = s(&["A man is eating food.", "A man is riding a horse."]);
    let first = embed_cached(&e, &texts, &dir).expect("first");
    let path = cache_path(&e, &texts, &dir);
    let bytes = std::fs::read(&path).expect("cache file written");
    assert_eq!(bytes.len(), 24 + 2 * 384 * 4);
    assert_eq!(&bytes[..8], b"USEMB001");
    assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 2);
    assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 384);
    // no temp files left behind
    assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 1);
    let second = embed_cached(&e, &texts, &dir).expect("second");
    assert_eq!(first, second);
    // the cache is really read: doctor the file and observe the change
    let mut doctored = bytes.clone();
    doctored[24..28].copy_from_slice(&42f32.to_le_bytes());
    std::fs::write(&path, &doctored).expect("write");
    assert_eq!(embed_cached(&e, &texts, &dir).expect("third")[0][0], 42.0);
    // a truncated file is recomputed and rewritten
    std::fs::write(&path, &bytes[..100]).expect("write");
    assert_eq!(embed_cached(&e, &texts, &dir).expect("fourth"), first);
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    // order matters for the key
    let rev = s(&["A man is riding a horse.", "A man is eating food."]);
    assert_ne!(cache_path(&e, &rev, &dir), path);
}

/// Reference scores printed by the sentence-transformers documentation (sbert.net,
/// "Semantic Textual Similarity") for all-MiniLM-L6-v2, rounded to 4 decimals.
#[test]
fn matches_sentence_transformers_reference_scores() {
    let _heavy = crate::util::heavy();
    let e = load(32);
    let s1 = s(&[
        "The new movie is awesome",
        "The cat sits outside",
        "A man is playing guitar",
    ]);
    let s2 = s(&[
        "The dog plays in the garden",
        "The new movie is so great",
        "A woman watches TV",
    ]);
    let expected = [
        [0.0543, 0.8939, -0.0502],
        [0.2838, -0.0029, 0.1310],
        [0.2277, -0.0136, -0.0327],
    ];
    let e1 = e.embed(&s1).expect("embed s1");
    let e2 = e.embed(&s2).expect("embed s2");
    let mut worst = 0f32;
    for i in 0..3 {
        for j in 0..3 {
            let c = cosine(&e1[i], &e2[j]);
            eprintln!(
                "{:<26} | {:<28} {c:+.4} (ref {:+.4})",
                s1[i], s2[j], expected[i][j]
            );
            worst = worst.max((c - expected[i][j]).abs());
        }
    }
    eprintln!("worst |ours - reference| = {worst:.2e}");
    assert!(worst < 1e-4, "{worst}");
}
