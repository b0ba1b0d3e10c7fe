//! The per-token Rust work of the decode loop: sampling one token from a
//! SmolLM2-sized vocabulary and watching the text for stop strings. Compare
//! with a decode step (~4 ms per sequence at 64 sequences on 2 cores) to see
//! the share it takes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usersim::backend::sampler::{Sampler, SamplingParams, StopMatcher};

/// SmolLM2's vocabulary size.
const VOCAB: usize = 49_152;

fn logits(seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Roughly the shape of real logits: most tokens far below a few peaks.
    (0..VOCAB)
        .map(|i| {
            let base: f32 = rng.random_range(-12.0..2.0);
            if i % 997 == 0 {
                base + 12.0
            } else {
                base
            }
        })
        .collect()
}

fn sampling(c: &mut Criterion) {
    let l = logits(1);
    let recent: Vec<i32> = (0..64).map(|i| i * 37).collect();
    let mut sampler = Sampler::new(VOCAB);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let defaults = SamplingParams::default();
    let mut g = c.benchmark_group("sample");
    g.bench_function(
        "defaults (top-k 40, top-p, min-p, repetition penalty)",
        |b| b.iter(|| sampler.sample(black_box(&l), &defaults, &recent, &mut rng)),
    );
    let full = SamplingParams {
        top_k: 0,
        ..defaults.clone()
    };
    g.bench_function("no top-k (full sort of the vocabulary)", |b| {
        b.iter(|| sampler.sample(black_box(&l), &full, &recent, &mut rng))
    });
    let greedy = SamplingParams {
        temperature: 0.0,
        ..defaults
    };
    g.bench_function("greedy", |b| {
        b.iter(|| sampler.sample(black_box(&l), &greedy, &recent, &mut rng))
    });
    g.finish();
}

fn stop_strings(c: &mut Criterion) {
    let pieces: Vec<String> = "I would love a thriller from the nineties , maybe something with a twist at the end ? What do you think about Heat or Se7en ?"
        .split(' ')
        .map(|w| format!(" {w}"))
        .collect();
    let stops = vec!["\nUser:".to_string(), "<|im_end|>".to_string()];
    c.bench_function("stop matcher: a 24-piece turn", |b| {
        b.iter(|| {
            let mut m = StopMatcher::new(&stops);
            for p in &pieces {
                black_box(m.push(p));
            }
            m.text().len()
        })
    });
}

criterion_group!(benches, sampling, stop_strings);
criterion_main!(benches);
