//! The Fréchet distance of two sets of 600 MiniLM-sized (384-d) vectors,
//! as `eval` computes it for every run (was an ignored test that printed
//! its time).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use usersim::eval::stats::frechet_distance;

fn vectors(k: usize) -> Vec<Vec<f32>> {
    (0..600)
        .map(|i| {
            (0..384)
                .map(|j| (((i * 31 + j * 17 + k) % 97) as f32 / 97.0).sin())
                .collect()
        })
        .collect()
}

fn frechet(c: &mut Criterion) {
    let (a, b) = (vectors(0), vectors(5));
    c.bench_function("frechet 600 x 384-d", |bench| {
        bench.iter(|| frechet_distance(black_box(&a), black_box(&b)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = frechet
}
criterion_main!(benches);
